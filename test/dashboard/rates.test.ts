import { afterEach, describe, expect, it, vi } from "vitest";
import { Rates } from "../../src/hub/dashboard/rates.ts";
import type { Store } from "../../src/store/store.ts";
import { silentLogger as log } from "../../src/stream/channel.ts";

/** A store whose counters the test sets; only activityCounters is read. */
const counters = () => {
  const c = { instructions: 0, replies: 0, errorsAfter: new Map<number, number>() };
  const store = {
    activityCounters: async (after: number | null) => ({
      instructions: c.instructions,
      replies: c.replies,
      errors: after === null ? 0 : (c.errorsAfter.get(after) ?? 0),
    }),
  } as unknown as Store;
  return { c, store };
};

describe("dashboard rates", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("rates - per second of each interval, oldest first, at most `size` kept; a counter that drops is 0, not negative", async () => {
    vi.useFakeTimers();
    const { c, store } = counters();
    const r = new Rates({ store, log, intervalMs: 1000, size: 3 });
    r.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(r.samples()).toEqual([]); // the first reading is the baseline
    const step = async (instructions: number, replies: number, errors = 0) => {
      c.errorsAfter.set(c.replies, errors);
      c.instructions = instructions;
      c.replies = replies;
      await vi.advanceTimersByTimeAsync(1000);
    };
    await step(10, 5, 2);
    await step(30, 25, 0);
    await step(30, 25, 0);
    expect(r.samples().map((s) => [s.pushes, s.replies, s.errors])).toEqual([
      [10, 5, 2],
      [20, 20, 0],
      [0, 0, 0],
    ]);
    // Cleanup deleted the newest rows: 0, not negative. The ring drops its oldest sample.
    await step(20, 25);
    expect(r.samples().map((s) => s.pushes)).toEqual([20, 0, 0]);
    await step(50, 40, 3);
    const s = r.samples();
    expect(s.map((x) => [x.pushes, x.replies, x.errors])).toEqual([
      [0, 0, 0],
      [0, 0, 0],
      [30, 15, 3],
    ]);
    expect(s[0]!.at).toBeLessThan(s[2]!.at);
    r.stop();
  });

  it("rates - a store that fails skips the sample and is read again at the next interval", async () => {
    vi.useFakeTimers();
    const { c, store } = counters();
    let fail = false;
    const read = store.activityCounters.bind(store);
    store.activityCounters = async (after) => {
      if (fail) throw new Error("store down");
      return read(after);
    };
    const warned: string[] = [];
    const r = new Rates({
      store,
      log: { ...log, warn: (_o: object, m?: string) => warned.push(m ?? "") },
      intervalMs: 1000,
    });
    r.start();
    await vi.advanceTimersByTimeAsync(0);
    fail = true;
    c.instructions = 5;
    await vi.advanceTimersByTimeAsync(1000);
    expect(r.samples()).toEqual([]);
    expect(warned).toEqual(["dashboard rates not sampled"]);
    fail = false;
    await vi.advanceTimersByTimeAsync(1000);
    // The 5 pushes are counted over the 2 s since the last good reading.
    expect(r.samples().map((s) => s.pushes)).toEqual([2.5]);
    r.stop();
  });
});
