// A node that never reads its socket (but keeps showing signs of life) and floods requests that only provoke
// error answers: the hub's buffer for it stays under maxBufferedBytes and the stream is closed, while a
// well-behaved node on the same hub goes on.
import type net from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { FleetlinkError, invalid } from "../../src/protocol/errors.ts";
import { Channel } from "../../src/stream/channel.ts";
import { memoryPair } from "../../src/stream/transport.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet } from "../helpers/fleet.ts";

const MAX_BUFFERED = 1024 * 1024;
const PING_PAYLOAD = Buffer.alloc(125, 1);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("a stream that never reads", () => {
  let f: TestFleet | undefined;
  afterEach(async () => {
    await f?.close();
  });

  const enroll = async (name: string) => {
    const res = await f!.hub.app.inject({
      method: "POST",
      url: "/v1/nodes/enroll",
      headers: { authorization: `Bearer ${ENROLL_TOKEN}` },
      payload: { name },
    });
    return { id: res.json().node.id as string, credential: res.json().credential as string };
  };
  const dial = (n: { id: string; credential: string }) =>
    new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(`${f!.url.replace("http", "ws")}/v1/nodes/stream`, {
        headers: { authorization: `Bearer ${n.id}.${n.credential}` },
      });
      ws.on("open", () => resolve(ws));
      ws.on("error", reject);
    });
  const hello = (ws: WebSocket) =>
    new Promise<void>((resolve) => {
      ws.once("message", () => resolve());
      ws.send(JSON.stringify({ t: "req", id: "h", m: "hello", b: { inflight: [] } }));
    });

  /**
   * Floods `frame`s (text frames, a function of i; null: a WebSocket ping with a 125-byte payload instead)
   * without reading; returns when all are written or the hub closed it.
   */
  const flood = async (ws: WebSocket, count: number, frame: (i: number) => string | null) => {
    const sock = (ws as unknown as { _socket: net.Socket })._socket;
    let sent = 0;
    while (sent < count && ws.readyState === ws.OPEN) {
      for (let k = 0; k < 1000 && sent < count; k++, sent++) {
        const text = frame(sent);
        if (text === null) ws.ping(PING_PAYLOAD);
        else ws.send(text);
      }
      // A sign of life now and then, as a node that answers pings would give.
      ws.pong();
      // Let the hub read; a writer blocked by TCP (the hub stopped reading) waits, as a real one would.
      while (sock.writableLength > 4 * 1024 * 1024 && ws.readyState === ws.OPEN) await sleep(5);
      await sleep(0);
    }
    return sent;
  };

  /**
   * Starts a hub (with a well-behaved node on it), dials a raw node that says hello and then stops reading,
   * floods `frame`s at it and measures what the hub queued for that node and when it was cut off.
   */
  const floodUnread = async (maxBufferedBytes: number | undefined, frame: (i: number) => string | null) => {
    f = await startFleet(maxBufferedBytes === undefined ? {} : { maxBufferedBytes });
    // The hub's side of every connection, to read what it has queued for each.
    const hubSockets: net.Socket[] = [];
    f.hub.app.server.on("connection", (s: net.Socket) => hubSockets.push(s));
    await f.node("good", { echo: (b: unknown) => b });
    const ws = await dial(await enroll("sloth"));
    await hello(ws);
    const hubSide = hubSockets.at(-1)!;
    (ws as unknown as { _socket: net.Socket })._socket.pause();
    const closed = new Promise<number>((r) => ws.on("close", (c) => r(c)));
    // Frames the hub wrote to it (answers, refusals), read once it resumes reading after the cut.
    let answers = 0;
    ws.on("message", () => answers++);
    let maxQueued = 0;
    const watch = setInterval(() => {
      maxQueued = Math.max(maxQueued, hubSide.writableLength);
    }, 1);
    const t0 = performance.now();
    const sent = await flood(ws, 150_000, frame);
    await expect.poll(() => hubSide.destroyed, { timeout: 10_000 }).toBe(true);
    const cutMs = performance.now() - t0;
    clearInterval(watch);
    (ws as unknown as { _socket: net.Socket })._socket.resume();
    const code = await closed;
    // The well-behaved node was never disturbed.
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const cfg = run.configuration((await fleet.nodes()).filter((x) => x.name === "good"));
    expect(cfg.size).toBe(1);
    await cfg.call("echo", 42, { quorum: "all", timeoutMs: 5000 });
    return { sent, answers, cutMs, maxQueued: Math.max(maxQueued, hubSide.writableLength), code };
  };

  const refused: [string, (i: number) => string][] = [
    ["requests for an unknown method", (i) => JSON.stringify({ t: "req", id: `x${i}`, m: "nosuch", b: {} })],
    ["requests with a malformed body", (i) => JSON.stringify({ t: "req", id: `x${i}`, m: "reply", b: 7 })],
  ];
  for (const [what, frame] of refused)
    test(`unread - a node flooding ${what} without reading is closed (policy) within 5 s, its hub buffer far under the limit; others go on`, async () => {
      const DEFAULT_MAX_BUFFERED = 64 * 1024 * 1024;
      const r = await floodUnread(undefined, frame);
      console.log(
        `unread (${what}): ${r.sent} of 150000 frames written, ${r.answers} answered, cut off after ` +
          `${r.cutMs.toFixed(0)} ms; ` +
          `hub queued at most ${r.maxQueued} bytes for it (limit ${DEFAULT_MAX_BUFFERED}); close ${r.code}`,
      );
      // 100 refusals are tolerated; the 101st closes the stream and nothing more is served.
      expect(r.answers).toBeLessThanOrEqual(101);
      expect(r.cutMs).toBeLessThan(5000);
      expect(r.maxQueued).toBeLessThan(DEFAULT_MAX_BUFFERED);
      expect(r.maxQueued).toBeLessThan(1024 * 1024);
      // It sees the policy close if it reads in time; after the grace the hub cuts the connection (1006).
      expect([CloseCode.policy, CloseCode.abnormal]).toContain(r.code);
    }, 60_000);

  test("unread - a node flooding answered requests (heartbeats) without reading is cut off as a slow consumer at maxBufferedBytes", async () => {
    const r = await floodUnread(MAX_BUFFERED, (i) =>
      JSON.stringify({ t: "req", id: `x${i}`, m: "heartbeat", b: {} }),
    );
    console.log(
      `unread (heartbeats): cut off after ${r.sent} frames written, ${r.cutMs.toFixed(0)} ms; hub queued at ` +
        `most ${r.maxQueued} bytes for it (limit ${MAX_BUFFERED}); close ${r.code}`,
    );
    expect(r.maxQueued).toBeLessThanOrEqual(MAX_BUFFERED);
    expect(r.cutMs).toBeLessThan(10_000);
    expect([CloseCode.slowConsumer, CloseCode.abnormal]).toContain(r.code);
  }, 60_000);

  // ws answers pings by itself, outside the transport's check: it cuts a peer owed more than 60 unsent pongs
  // (maxPendingAutoPongs), so what it queues for a ping flood stays small too.
  test("unread - a node flooding pings without reading is cut before the pongs it is owed reach maxBufferedBytes", async () => {
    const r = await floodUnread(MAX_BUFFERED, () => null);
    console.log(
      `unread (pings): cut off after ${r.sent} pings written, ${r.cutMs.toFixed(0)} ms; hub queued at ` +
        `most ${r.maxQueued} bytes for it (limit ${MAX_BUFFERED}); close ${r.code}`,
    );
    expect(r.maxQueued).toBeLessThanOrEqual(MAX_BUFFERED);
    expect(r.cutMs).toBeLessThan(10_000);
    expect([CloseCode.slowConsumer, CloseCode.abnormal]).toContain(r.code);
  }, 60_000);

  test("refusals - a peer gets 100 refused requests per window, the 101st closes its stream with policy", async () => {
    const [hubSide, nodeSide] = memoryPair();
    const ch = new Channel(hubSide, { onRequest: () => Promise.reject(invalid("b", "no")) });
    const peer = new Channel(nodeSide, { maxRefused: { count: 1_000_000, windowMs: 1 } });
    for (let i = 0; i < 100; i++) await rejectsWith(peer.request("x", {}), "INVALID_ARGUMENT");
    expect(ch.isOpen).toBe(true);
    // The 101st: its answer may or may not leave before the close.
    await peer.request("x", {}).catch(() => {});
    await expect.poll(() => ch.closeCode).toBe(CloseCode.policy);
    expect(await peer.closed).toMatch(/more than 100 requests refused/);
  });

  test("refusals - errors that are not the peer's fault (a store outage) never close its stream", async () => {
    const [hubSide, nodeSide] = memoryPair();
    const ch = new Channel(hubSide, {
      onRequest: () => Promise.reject(new FleetlinkError("STORE_UNAVAILABLE", "down")),
    });
    const peer = new Channel(nodeSide);
    for (let i = 0; i < 300; i++) await rejectsWith(peer.request("x", {}), "STORE_UNAVAILABLE");
    expect(ch.isOpen).toBe(true);
  });
});
