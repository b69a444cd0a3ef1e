import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { Liveness, watchTransport } from "../../src/stream/liveness.ts";
import { memoryPair } from "../../src/stream/transport.ts";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A watched pair: `a` judges `b` by the rule; records pings `b` receives and when `a` closed, with what code. */
const watchedPair = (rule = { probeAfterMs: 1000, dropAfterMs: 1500, checkMs: 100 }) => {
  const [a, b] = memoryPair();
  const liveness = new Liveness(rule);
  const drops: string[] = [];
  const w = watchTransport(liveness, a, (why) => drops.push(why));
  const pings: number[] = [];
  const t0 = Date.now();
  b.onAlive(() => pings.push(Date.now() - t0));
  let closed: { at: number; code: number } | null = null;
  a.onClose((code) => {
    closed = { at: Date.now() - t0, code };
  });
  return { a, b, liveness, w, drops, pings, closed: () => closed };
};

describe("liveness", () => {
  test("liveness - a silent peer is probed after probeAfterMs and dropped after dropAfterMs (within one check)", async () => {
    const p = watchedPair();
    p.a.blackhole(); // half-open: nothing crosses, nothing closes
    await vi.advanceTimersByTimeAsync(2000);
    expect(p.drops).toEqual([expect.stringMatching(/silent for 1[56]\d\d ms/)]);
    expect(p.closed()).toMatchObject({ code: CloseCode.abnormal });
    expect(p.closed()!.at).toBeGreaterThan(1500);
    expect(p.closed()!.at).toBeLessThanOrEqual(1600);
    expect(p.liveness.size).toBe(0);
  });

  test("liveness - an idle live peer answers each probe and is never dropped; a talking peer is never pinged", async () => {
    const idle = watchedPair();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(idle.closed()).toBeNull();
    // Pinged once per silence: every probeAfterMs (+ one check), not every check.
    expect(idle.pings.length).toBeGreaterThanOrEqual(8);
    expect(idle.pings.length).toBeLessThanOrEqual(10);

    const talker = watchedPair();
    const chatter = setInterval(() => talker.b.send("hi"), 300);
    await vi.advanceTimersByTimeAsync(10_000);
    clearInterval(chatter);
    expect(talker.pings).toEqual([]);
    expect(talker.closed()).toBeNull();
  });

  test("liveness - a probe on suspicion drops a silent peer within its window, and a live one survives it", async () => {
    const live = watchedPair({ probeAfterMs: 10_000, dropAfterMs: 20_000, checkMs: 1000 });
    live.w.probe(200);
    await vi.advanceTimersByTimeAsync(500);
    expect(live.pings).toHaveLength(1);
    expect(live.closed()).toBeNull();

    const dead = watchedPair({ probeAfterMs: 10_000, dropAfterMs: 20_000, checkMs: 1000 });
    dead.a.blackhole();
    dead.w.probe(200);
    await vi.advanceTimersByTimeAsync(199);
    expect(dead.closed()).toBeNull();
    await vi.advanceTimersByTimeAsync(10);
    expect(dead.drops).toEqual(["no answer within 200 ms of a probe"]);
    expect(dead.closed()).toMatchObject({ code: CloseCode.abnormal });
  });

  test("liveness - a late tick (our own loop was blocked) probes instead of dropping: the peer gets a fresh window", async () => {
    const p = watchedPair();
    p.a.blackhole();
    // The loop is blocked for 5 s: the clock moves, no timer runs.
    vi.setSystemTime(Date.now() + 5000);
    await vi.advanceTimersByTimeAsync(100);
    expect(p.closed()).toBeNull();
    // Still silent afterwards: dropped once dropAfterMs − probeAfterMs more has passed.
    await vi.advanceTimersByTimeAsync(700);
    expect(p.closed()).toMatchObject({ code: CloseCode.abnormal });
  });

  test("liveness - a closed transport is no longer watched, and one timer serves every peer", async () => {
    const liveness = new Liveness({ probeAfterMs: 1000, dropAfterMs: 1500 });
    const pairs = [memoryPair(), memoryPair(), memoryPair()];
    for (const [a] of pairs) watchTransport(liveness, a);
    expect(liveness.size).toBe(3);
    expect(vi.getTimerCount()).toBe(1);
    pairs[0]![0].close();
    await vi.advanceTimersByTimeAsync(1);
    expect(liveness.size).toBe(2);
    liveness.close();
    expect(liveness.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(() => new Liveness({ probeAfterMs: 10, dropAfterMs: 10 })).toThrow(RangeError);
  });
});
