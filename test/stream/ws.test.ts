// The WebSocket transport over a real socket: the frames of one callback of the event loop leave in one write.
import type { AddressInfo } from "node:net";
import type { Writable } from "node:stream";
import { afterEach, describe, expect, test } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { Channel } from "../../src/stream/channel.ts";
import { wsTransport } from "../../src/stream/ws.ts";

const cleanups: (() => void)[] = [];
/** The clients of `pair`, newest last. */
const clients: WebSocket[] = [];
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
  clients.push(client);
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

  test("defer - a held answer leaves with the channel's next frame in one write, or alone after maxDelayMs; errors are never held", async () => {
    const { ws, t, received } = await pair();
    const writes = countWrites(ws);
    const ch = new Channel(t, {
      onRequest: (m) => {
        if (m === "bad") throw new Error("no");
        return { ok: m };
      },
      deferAnswers: { methods: ["ack"], maxDelayMs: 1000 },
    });
    const frames = () => received.map((f) => JSON.parse(f) as { t: string; id?: string; m?: string });
    // The peer (the client end) asks, as a node sends its reply.
    const send = (f: object) => clients.at(-1)!.send(JSON.stringify(f));
    send({ t: "req", id: "a1", m: "ack", b: null });
    await new Promise((r) => setTimeout(r, 50));
    expect(frames()).toEqual([]);
    ch.emit("next", { n: 1 });
    await expect.poll(() => received.length).toBe(2);
    expect(frames().map((f) => f.id ?? f.m)).toEqual(["a1", "next"]);
    expect(writes()).toBe(1);
    // An error answer is never held; an answer held with no frame after it goes alone after maxDelayMs.
    const t0 = Date.now();
    send({ t: "req", id: "b1", m: "bad", b: null });
    await expect.poll(() => frames().some((f) => f.id === "b1")).toBe(true);
    expect(Date.now() - t0).toBeLessThan(500);
    send({ t: "req", id: "a2", m: "ack", b: null });
    await new Promise((r) => setTimeout(r, 300));
    expect(frames().some((f) => f.id === "a2")).toBe(false);
    await expect.poll(() => frames().some((f) => f.id === "a2"), { timeout: 2000 }).toBe(true);
  });
});
