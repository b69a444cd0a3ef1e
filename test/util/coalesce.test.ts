import { describe, expect, test } from "vitest";
import { Coalesced } from "../../src/util/coalesce.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("coalesce", () => {
  test("coalesce - triggers during a run fold into one more run; triggerIfIdle drops them instead", async () => {
    let runs = 0;
    const c = new Coalesced(
      async () => {
        runs++;
        await sleep(20);
      },
      () => {},
    );
    c.trigger();
    await sleep(5);
    for (let i = 0; i < 10; i++) c.trigger();
    await sleep(80);
    expect(runs).toBe(2);

    let sweeps = 0;
    const s = new Coalesced(
      async () => {
        sweeps++;
        await sleep(20);
      },
      () => {},
    );
    expect(s.triggerIfIdle()).toBe(true);
    await sleep(5);
    expect(s.busy).toBe(true);
    expect(s.triggerIfIdle()).toBe(false);
    await sleep(40);
    expect(sweeps).toBe(1);
  });

  test("coalesce - with minIntervalMs, runs start at least that far apart and triggers meanwhile join the next run", async () => {
    const starts: number[] = [];
    const errors: unknown[] = [];
    const c = new Coalesced(
      async () => {
        starts.push(Date.now());
        if (starts.length === 1) throw new Error("boom");
      },
      (e) => errors.push(e),
      { minIntervalMs: 50 },
    );
    c.trigger();
    await sleep(5);
    for (let i = 0; i < 5; i++) {
      c.trigger();
      await sleep(5);
    }
    await sleep(100);
    expect(starts).toHaveLength(2);
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(45);
    expect(errors).toHaveLength(1);
    c.close();
    c.trigger();
    await sleep(70);
    expect(starts).toHaveLength(2);
  });
});
