import { afterEach, describe, expect, test } from "vitest";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { Channel } from "../../src/stream/channel.ts";
import { Dialer, type DialerOptions, type DialerStatus, type Loss } from "../../src/stream/dialer.ts";
import { type MemoryTransport, memoryPair } from "../../src/stream/transport.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dialers: Dialer[] = [];
afterEach(() => {
  for (const d of dialers.splice(0)) d.stop();
});

/** Fake hubs over memoryPair: each dial gets a fresh pair; the hub side answers hello unless told otherwise. */
const fakeHubs = () => {
  const conns: { hub: string; hubSide: MemoryTransport; client: MemoryTransport; ch: Channel }[] = [];
  const refuse = new Set<string>();
  let helloFails = false;
  const connect = async (hub: string) => {
    if (refuse.has(hub)) throw Object.assign(new Error(`${hub} refused`), { status: 403, code: "NOPE" });
    const [client, hubSide] = memoryPair();
    const ch = new Channel(hubSide, {
      onRequest: (m) => {
        if (m === "hello" && helloFails) throw new Error("no");
        return { ok: m };
      },
    });
    conns.push({ hub, hubSide, client, ch });
    return client;
  };
  return {
    conns,
    refuse,
    connect,
    failHello: (v: boolean) => {
      helloFails = v;
    },
  };
};

const start = (o: Partial<DialerOptions> & Pick<DialerOptions, "connect">) => {
  const seen: DialerStatus[] = [];
  const losses: Loss[] = [];
  const d = new Dialer({
    hubs: ["a", "b"],
    liveness: { probeAfterMs: 40, dropAfterMs: 80, checkMs: 10 },
    backoff: { initialMs: 5, maxMs: 20, jitter: 0 },
    hello: async (ch) => void (await ch.request("hello", {}, { timeoutMs: 200 })),
    onStatus: (s) => seen.push(s),
    ...o,
    onLost: (l) => {
      losses.push(l);
      return o.onLost?.(l);
    },
  });
  dialers.push(d);
  d.start();
  return { d, seen, losses };
};

const until = async (cond: () => boolean, ms = 2000) => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms`);
    await sleep(2);
  }
};

describe("dialer", () => {
  test("dialer - dial → hello → live; a lost connection backs off and goes live on the next hub", async () => {
    const hubs = fakeHubs();
    const { d, seen, losses } = start({ connect: hubs.connect });
    await until(() => d.status.state === "live");
    expect(d.status).toEqual({ state: "live", hub: "a" });
    expect(seen.map((s) => s.state)).toEqual(["dialing", "hello", "live"]);
    expect(await d.channel!.request("x")).toEqual({ ok: "x" });

    hubs.conns[0]!.ch.close(CloseCode.goingAway, "hub shutting down");
    await until(() => d.status.state === "live" && d.hub === "b");
    expect(losses).toEqual([
      expect.objectContaining({ hub: "a", code: CloseCode.goingAway, wasLive: true, dead: false }),
    ]);
    expect(seen.map((s) => s.state)).toEqual([
      "dialing",
      "hello",
      "live",
      "lost",
      "dialing",
      "hello",
      "live",
    ]);
    expect(seen[3]).toMatchObject({ state: "lost", code: CloseCode.goingAway, retryInMs: 5 });
  });

  test("dialer - a backoff policy with maxAttempts gives up (stopped) when they run out, never redials at once", async () => {
    const hubs = fakeHubs();
    hubs.refuse.add("a");
    hubs.refuse.add("b");
    const { d, losses } = start({
      connect: hubs.connect,
      backoff: { initialMs: 5, maxMs: 5, jitter: 0, maxAttempts: 3 },
    });
    await until(() => d.status.state === "stopped");
    expect(d.status).toMatchObject({ state: "stopped", reason: "gave up after 3 attempts" });
    expect(losses).toHaveLength(4); // the first dial and three retries
    await sleep(50);
    expect(losses).toHaveLength(4);
  });

  test("dialer - the policy branches on the close code: a replaced stream waits as told, a refusal can stop it", async () => {
    const hubs = fakeHubs();
    const { d, losses } = start({
      connect: hubs.connect,
      onLost: (l) =>
        l.code === CloseCode.replaced
          ? { retryInMs: 150 }
          : (l.error as { code?: string } | undefined)?.code === "NOPE"
            ? { stop: "refused for good" }
            : undefined,
    });
    await until(() => d.status.state === "live");
    // The reason text mentions another code: only the code counts.
    hubs.conns[0]!.ch.close(CloseCode.replaced, "(4001) replaced by a newer stream");
    await until(() => d.status.state === "lost");
    expect(d.status).toMatchObject({ state: "lost", code: CloseCode.replaced, retryInMs: 150 });
    await sleep(80);
    expect(hubs.conns).toHaveLength(1); // still waiting
    hubs.refuse.add("b");
    await until(() => d.status.state === "stopped");
    expect(d.status).toEqual({ state: "stopped", reason: "refused for good" });
    expect(losses[1]).toMatchObject({ hub: "b", code: CloseCode.abnormal, wasLive: false, dead: false });
  });

  test("dialer - a half-open path is dropped by the liveness rule (dead) and the next hub dialled", async () => {
    const hubs = fakeHubs();
    const { d, losses } = start({ connect: hubs.connect });
    await until(() => d.status.state === "live");
    hubs.conns[0]!.client.blackhole();
    await until(() => d.status.state === "live" && d.hub === "b");
    expect(losses[0]).toMatchObject({ hub: "a", code: CloseCode.abnormal, dead: true, wasLive: true });
    expect(losses[0]!.reason).toMatch(/silent for/);
    // A live path answers the rule's pings and stays.
    await sleep(300);
    expect(d.status).toEqual({ state: "live", hub: "b" });
    expect(losses).toHaveLength(1);
  });

  test("dialer - a failed hello ends the connection before it counts as live; drop() and probe() end a live one", async () => {
    const hubs = fakeHubs();
    hubs.failHello(true);
    const { d, seen, losses } = start({ connect: hubs.connect });
    await until(() => losses.length >= 2);
    expect(seen.some((s) => s.state === "live")).toBe(false);
    expect(losses[0]).toMatchObject({ code: CloseCode.internalError, wasLive: false });
    hubs.failHello(false);
    await until(() => d.status.state === "live");
    const n = losses.length;
    d.drop("suspected", false);
    await until(() => losses.length === n + 1);
    expect(losses[n]).toMatchObject({ reason: "suspected", dead: false, wasLive: true });
    await until(() => d.status.state === "live");
    hubs.conns.at(-1)!.client.blackhole();
    d.probe(20);
    await until(() => losses.length === n + 2, 60);
    expect(losses[n + 1]!.reason).toMatch(/no answer within 20 ms of a probe/);
  });

  test("dialer - stop ends the connection and every timer; a dial that completes after stop is closed at once", async () => {
    const hubs = fakeHubs();
    let release: (() => void) | undefined;
    const slow = (hub: string) =>
      new Promise<void>((r) => {
        release = r;
      }).then(() => hubs.connect(hub));
    const { d } = start({ connect: slow });
    await until(() => release !== undefined);
    d.stop("bye");
    release!();
    await until(() => hubs.conns.length === 1);
    await sleep(5);
    expect(hubs.conns[0]!.hubSide.isOpen).toBe(false);
    expect(d.status).toEqual({ state: "stopped", reason: "bye" });

    const { d: d2 } = start({ connect: hubs.connect });
    await until(() => d2.status.state === "live");
    const conn = hubs.conns.at(-1)!;
    const closed = new Promise<number>((r) => conn.hubSide.onClose((c) => r(c)));
    d2.stop("node stopping");
    expect(await closed).toBe(CloseCode.normal);
    await sleep(50);
    expect(hubs.conns.at(-1)).toBe(conn); // no redial
  });
});

describe("dialer drop", () => {
  test("dialer - drop() during a dial that never answers gives it up and dials the next hub", async () => {
    const hubs = fakeHubs();
    const silent = (hub: string) => (hub === "a" ? new Promise<never>(() => {}) : hubs.connect(hub));
    const { d, losses } = start({ connect: silent });
    await until(() => d.status.state === "dialing");
    d.drop("hub a unreachable over HTTP", false);
    await until(() => d.status.state === "live");
    expect(d.hub).toBe("b");
    expect(losses).toEqual([expect.objectContaining({ hub: "a", dead: false, wasLive: false })]);
  });
});
