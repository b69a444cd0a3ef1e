// The WebSocket transport over a real socket: the frames of one callback of the event loop leave in one write.
import type { AddressInfo } from "node:net";
import type { Writable } from "node:stream";
import { afterEach, describe, expect, test } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { wsTransport } from "../../src/stream/ws.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A server-side transport and the client that dialled it, with every text frame the client received. */
const pair = async () => {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  cleanups.push(() => wss.close());
  await new Promise((r) => wss.once("listening", r));
  const server = new Promise<WebSocket>((r) => wss.once("connection", r));
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  cleanups.push(() => client.terminate());
  const received: string[] = [];
  client.on("message", (d) => received.push(d.toString()));
  await new Promise((r) => client.once("open", r));
  const ws = await server;
  return { ws, t: wsTransport(ws), received };
};

/** Counts the writes the socket under `ws` hands to the kernel (one `writev` for a corked batch). */
const countWrites = (ws: WebSocket): (() => number) => {
  const socket = (ws as unknown as { _socket: Writable & { _writev?: unknown; _write: unknown } })._socket;
  let n = 0;
  for (const key of ["_write", "_writev"] as const) {
    const orig = socket[key] as ((...a: unknown[]) => void) | undefined;
    if (!orig) continue;
    socket[key] = (...a: unknown[]) => {
      n++;
      orig.apply(socket, a);
    };
  }
  return () => n;
};

describe("ws transport", () => {
  test("cork - frames sent in one callback and its promise jobs leave in one write, in order; a later callback's in another", async () => {
    const { ws, t, received } = await pair();
    const writes = countWrites(ws);
    for (let i = 0; i < 25; i++) t.send(JSON.stringify({ i }));
    void Promise.resolve().then(async () => {
      await null;
      for (let i = 25; i < 50; i++) t.send(JSON.stringify({ i }));
    });
    t.ping?.();
    expect(writes()).toBe(0);
    await new Promise((r) => setImmediate(r));
    expect(writes()).toBe(1);
    await expect.poll(() => received.length).toBe(50);
    expect(received.map((f) => (JSON.parse(f) as { i: number }).i)).toEqual([...Array(50).keys()]);
    t.send("late");
    await new Promise((r) => setImmediate(r));
    expect(writes()).toBe(2);
    await expect.poll(() => received.at(-1)).toBe("late");
  });
});
