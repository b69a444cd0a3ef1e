// Liveness of a run's reply stream: a stream whose replica went silent is replaced within two ping
// intervals, replies pushed into the dead one are read back, and a healthy stream is never polled.
import { afterEach, describe, expect, test, vi } from "vitest";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { HubClient } from "../../src/coordinator/http.ts";
import type { Configuration, RunHandle } from "../../src/coordinator/run.ts";
import { ReplyStream } from "../../src/coordinator/run-stream.ts";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { MAX_CALLS_PER_PUSH } from "../../src/protocol/limits.ts";
import { RunEvents, type WireResult } from "../../src/protocol/wire.ts";
import { Channel, silentLogger } from "../../src/stream/channel.ts";
import { type MemoryTransport, memoryPair } from "../../src/stream/transport.ts";
import { type Blackhole, startBlackhole } from "../helpers/blackhole.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const PING = 500;

const setup = async (paths: number): Promise<{ f: TestFleet; hole: Blackhole[] }> => {
  const f = await startFleet();
  cleanups.push(() => f.close());
  const target = { host: "127.0.0.1", port: Number(new URL(f.url).port) };
  const hole: Blackhole[] = [];
  for (let i = 0; i < paths; i++) {
    const h = await startBlackhole(target);
    cleanups.push(() => h.close());
    hole.push(h);
  }
  return { f, hole };
};

const callMs = async (cfg: Configuration, v: unknown, timeoutMs = 10_000): Promise<number> => {
  const t0 = performance.now();
  const r = await cfg.call("echo", v, { quorum: "all", timeoutMs });
  expect([...r.replies.values()]).toEqual([v]);
  return performance.now() - t0;
};

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const hubOf = (run: RunHandle) => (run.replyStream.state === "connected" ? run.replyStream.hub : null);
const until = async (cond: () => boolean, ms = 2000) => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms`);
    await sleep(2);
  }
};
const waitFor = async (cond: () => boolean, ms: number): Promise<number> => {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error(`not within ${ms} ms`);
    await sleep(10);
  }
  return performance.now() - t0;
};

describe("run stream", () => {
  test("stream - its replica blackholed: replaced within 2 ping intervals, the next call done within 2 intervals + 1 s, fast again once healed", async () => {
    const { f, hole } = await setup(2);
    const [a, b] = hole as [Blackhole, Blackhole];
    const node = await f.node("echo", { echo: (p) => p });
    const fleet = await Fleet.connect({ hub: [a.url, b.url], token: TOKEN, pingIntervalMs: PING });
    cleanups.push(() => fleet.close());
    const run = await fleet.createRun();
    const cfg = run.configuration([node.nodeId!]);
    expect(hubOf(run)).toBe(a.url);
    const before: number[] = [];
    for (let i = 0; i < 20; i++) before.push(await callMs(cfg, i));

    a.cut();
    const cutAt = performance.now();
    const moved = waitFor(() => hubOf(run) === b.url, 4 * PING + 1000);
    // Pushed to the dead replica at once: cut short when the stream finds it dead, retried on the other.
    const first = await callMs(cfg, "first");
    const movedMs = await moved;
    // The hub still holds the dead connection open (no FIN crossed the cut) and pushes replies into it:
    // these calls complete through the read-back, not at their deadline.
    const during: number[] = [];
    for (let i = 0; i < 10; i++) during.push(await callMs(cfg, `cut ${i}`));
    const partitionMs = performance.now() - cutAt;

    a.heal();
    await sleep(200);
    const after: number[] = [];
    for (let i = 0; i < 20; i++) after.push(await callMs(cfg, `healed ${i}`));

    console.log(
      [
        `ping interval ${PING} ms, partition ${Math.round(partitionMs)} ms`,
        `stream replaced after ${Math.round(movedMs)} ms; first call after the cut ${Math.round(first)} ms`,
        `calls before: median ${median(before).toFixed(1)} ms; during the cut: median ${median(during).toFixed(0)} ms, max ${Math.max(...during).toFixed(0)} ms`,
        `after healing: median ${median(after).toFixed(1)} ms, max ${Math.max(...after).toFixed(1)} ms`,
      ].join("\n"),
    );
    expect(movedMs).toBeLessThan(2 * PING + 500);
    expect(first).toBeLessThan(2 * PING + 1000);
    expect(Math.max(...during)).toBeLessThan(2 * PING + 1000);
    expect(median(after)).toBeLessThan(100);
    expect(Math.max(...after)).toBeLessThan(1000);
  }, 30_000);

  test("stream - the only replica partitioned for 3 s: calls end by their deadline, then the stream is back and calls are fast", async () => {
    const { f, hole } = await setup(1);
    const a = hole[0]!;
    const node = await f.node("echo", { echo: (p) => p });
    const fleet = await Fleet.connect({ hub: [a.url], token: TOKEN, pingIntervalMs: PING });
    cleanups.push(() => fleet.close());
    const run = await fleet.createRun();
    const cfg = run.configuration([node.nodeId!]);
    await callMs(cfg, "warm");

    a.cut();
    const cutAt = performance.now();
    while (performance.now() - cutAt < 3000) {
      const t0 = performance.now();
      const err = await cfg.call("echo", "lost", { quorum: "all", timeoutMs: 800 }).catch((e) => e);
      expect(err).toBeInstanceOf(Error);
      expect(performance.now() - t0).toBeLessThan(800 + 500);
    }
    a.heal();
    const healedAt = performance.now();
    // Before the stream is back, a call completes through the fallback read-back.
    const firstAfter = await callMs(cfg, "right after healing", 5000);
    await waitFor(() => hubOf(run) === a.url, 5000);
    const backMs = performance.now() - healedAt;
    await sleep(100);
    const after: number[] = [];
    for (let i = 0; i < 20; i++) after.push(await callMs(cfg, i));
    console.log(
      `single replica, 3 s partition healed: first call ${Math.round(firstAfter)} ms, stream back ${Math.round(backMs)} ms after healing, then median ${median(after).toFixed(1)} ms, max ${Math.max(...after).toFixed(1)} ms`,
    );
    expect(firstAfter).toBeLessThan(1500);
    expect(median(after)).toBeLessThan(100);
    expect(Math.max(...after)).toBeLessThan(1000);
  }, 30_000);

  test("stream - a healthy stream is never polled: a 2.5 s call makes no replies/query request", async () => {
    const { f, hole } = await setup(1);
    const node = await f.node("slow", {
      echo: async (p) => {
        await sleep(2500);
        return p;
      },
    });
    // Pinged every second: the 2.5 s call still spans two intervals, and a CI machine busy with the rest of the
    // suite does not make a healthy stream look silent (at 500 ms it was replaced, and read back, in 2 of 4 runs).
    const fleet = await Fleet.connect({ hub: [hole[0]!.url], token: TOKEN, pingIntervalMs: 1000 });
    cleanups.push(() => fleet.close());
    const run = await fleet.createRun();
    // Healthy means connected: until the stream is up, open calls are read back by design.
    await run.ready();
    const requests = vi.spyOn(fleet.http, "request");
    const ms = await callMs(run.configuration([node.nodeId!]), "slow");
    const queried = requests.mock.calls.filter(([, path]) => path.includes("/replies/query"));
    expect(ms).toBeLessThan(2500 + 500);
    expect(queried).toHaveLength(0);
  }, 15_000);

  test(`stream - ${MAX_CALLS_PER_PUSH + 476} calls started in one turn go out in push frames of at most ${MAX_CALLS_PER_PUSH} calls, none over HTTP, all answered`, async () => {
    const f = await startFleet();
    cleanups.push(() => f.close());
    const node = await f.node("many", { echo: (p) => p });
    const fleet = await Fleet.connect({ hub: f.url, token: TOKEN });
    cleanups.push(() => fleet.close());
    const run = await fleet.createRun();
    const cfg = run.configuration([node.nodeId!]);
    await cfg.call("echo", "warm", { quorum: "all" });
    const ch = (run as unknown as { replies: ReplyStream }).replies.live?.channel;
    expect(ch).toBeDefined();
    const frames = vi.spyOn(ch!, "request");
    const posted = vi.spyOn(fleet.http, "request");
    const n = MAX_CALLS_PER_PUSH + 476;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => cfg.call("echo", i, { quorum: "all", timeoutMs: 30_000 })),
    );
    expect(results.map((r) => [...r.replies.values()][0])).toEqual(Array.from({ length: n }, (_, i) => i));
    const sizes = frames.mock.calls
      .filter(([method]) => method === "push")
      .map(([, body]) => (body as { calls: unknown[] }).calls.length);
    expect(sizes).toEqual([MAX_CALLS_PER_PUSH, 476]);
    expect(posted.mock.calls.filter(([, path]) => path.includes("/instructions"))).toEqual([]);
  }, 60_000);

  test("stream - while it is down, open calls are read back on a timer that never overlaps itself", async () => {
    const { f, hole } = await setup(1);
    const a = hole[0]!;
    const node = await f.node("slow", {
      echo: async (p) => {
        await sleep(2000);
        return p;
      },
    });
    const fleet = await Fleet.connect({
      hub: [a.url],
      token: TOKEN,
      pingIntervalMs: 200,
      recoveryPollMs: 100,
      requestTimeoutMs: 300,
    });
    cleanups.push(() => fleet.close());
    const run = await fleet.createRun();
    const http = fleet.http;
    const real = http.request.bind(http);
    let queries = 0;
    let inflight = 0;
    let peak = 0;
    vi.spyOn(http, "request").mockImplementation(async (...args: Parameters<typeof real>) => {
      if (!args[1].includes("/replies/query")) return real(...args);
      queries++;
      peak = Math.max(peak, ++inflight);
      try {
        return await real(...args);
      } finally {
        inflight--;
      }
    });
    const call = run.configuration([node.nodeId!]).call("echo", "x", { quorum: "all", timeoutMs: 10_000 });
    await sleep(100);
    // Every read-back hangs until its 300 ms timeout: a timer that did not wait for it would pile them up.
    a.cut();
    await sleep(2500);
    const whileDown = queries;
    a.heal();
    const r = await call;
    expect(r.replies.get(node.nodeId!)).toBe("x");
    const done = queries;
    await sleep(1000);
    console.log(
      `stream down 2.5 s: ${whileDown} read-backs, at most ${peak} at a time; ${queries - done} after the call`,
    );
    expect(peak).toBe(1);
    expect(whileDown).toBeGreaterThanOrEqual(2);
    expect(whileDown).toBeLessThanOrEqual(Math.ceil(2500 / 100) + 2);
    // No open call, no read-back.
    expect(queries - done).toBe(0);
  }, 20_000);
});

describe("reply stream over memoryPair", () => {
  /** Fake hubs: each connection gets a hub-side channel the test can emit replies on or close. */
  const fakeHubs = () => {
    const conns: { hub: string; ch: Channel; client: MemoryTransport }[] = [];
    const connect = async (hub: string) => {
      const [client, hubSide] = memoryPair();
      conns.push({ hub, ch: new Channel(hubSide), client });
      return client;
    };
    return { conns, connect };
  };
  const result = (replyTo: string, payload: unknown): WireResult => ({
    id: crypto.randomUUID(),
    replyTo,
    node: "n",
    groupId: null,
    method: "m",
    payload,
    error: null,
    createdAt: Date.now(),
  });

  test("run stream - replies reach their call; a hub that ends the stream is rotated past, and replies pushed meanwhile are read back on reconnect", async () => {
    const hubs = fakeHubs();
    const http = new HubClient(["http://a", "http://b"], "t");
    const asked: string[][] = [];
    let held: WireResult[] = [];
    vi.spyOn(http, "request").mockImplementation(async (_m, path, body) => {
      expect(path).toMatch(/\/replies\/query$/);
      asked.push((body as { instructionIds: string[] }).instructionIds);
      const out = held;
      held = [];
      return { replies: out } as never;
    });
    const rs = new ReplyStream("run1", http, silentLogger, { connect: hubs.connect, recoveryPollMs: 10_000 });
    cleanups.push(async () => rs.close());
    await rs.ready();
    expect(rs.state).toEqual({ state: "connected", hub: "http://a" });
    const first = rs.expect("i1");
    hubs.conns[0]!.ch.emit(RunEvents.replies, [result("i1", 1)]);
    expect((await first).payload).toBe(1);
    expect(rs.size).toBe(0);

    // The hub ends the stream (it is shutting down); a reply stored meanwhile is read back once reconnected.
    const second = rs.expect("i2");
    hubs.conns[0]!.ch.close(CloseCode.goingAway, "hub shutting down");
    held = [result("i2", 2)];
    await until(() => rs.state.state === "connected" && hubs.conns.length === 2);
    expect(hubs.conns[1]!.hub).toBe("http://b");
    expect((await second).payload).toBe(2);
    expect(asked.at(-1)).toEqual(["i2"]);
    // A late or unknown reply has no waiter and changes nothing.
    hubs.conns[1]!.ch.emit(RunEvents.replies, [result("i1", "late")]);
    const open = rs.expect("i3");
    rs.close();
    await expect(open).rejects.toMatchObject({ code: "FLEETLINK_E_CANCELLED" });
    expect(rs.state).toEqual({ state: "closed" });
  });

  test("run stream - a silent hub (half-open path) is dropped by the liveness rule and reported unreachable", async () => {
    const hubs = fakeHubs();
    const http = new HubClient(["http://a", "http://b"], "t");
    vi.spyOn(http, "request").mockResolvedValue({ replies: [] } as never);
    const reported: string[] = [];
    http.onUnreachable((hub, _e, certain) => certain && reported.push(hub));
    const rs = new ReplyStream("run2", http, silentLogger, { connect: hubs.connect, pingIntervalMs: 40 });
    cleanups.push(async () => rs.close());
    await rs.ready();
    hubs.conns[0]!.client.blackhole();
    await until(() => hubs.conns.length === 2 && rs.state.state === "connected");
    expect(reported).toEqual(["http://a"]);
    expect(rs.state).toEqual({ state: "connected", hub: "http://b" });
  });
});
