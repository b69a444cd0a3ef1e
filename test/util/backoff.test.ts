import { describe, expect, test } from "vitest";
import { Backoff, backoffDelay } from "../../src/util/backoff.ts";

describe("backoff", () => {
  test("backoff - without jitter the delays grow by the factor up to the cap", () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0 });
    expect([1, 2, 3, 4, 5, 6].map(() => b.next())).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(b.attempts).toBe(6);
    b.reset();
    expect(b.next()).toBe(100);
    const triple = new Backoff({ initialMs: 10, maxMs: 10_000, factor: 3, jitter: 0 });
    expect([triple.next(), triple.next(), triple.next()]).toEqual([10, 30, 90]);
  });

  test("backoff - jitter takes its share of each delay at random: full jitter spans [0, d], 0.25 spans [0.75 d, d]", () => {
    const full = { initialMs: 1000, maxMs: 1000 };
    expect(backoffDelay(full, 0, () => 0)).toBe(1000);
    expect(backoffDelay(full, 0, () => 0.999)).toBe(1);
    expect(backoffDelay({ ...full, jitter: 0.25 }, 0, () => 0.999)).toBeGreaterThanOrEqual(750);
    expect(backoffDelay({ ...full, jitter: 0.25 }, 0, () => 0)).toBe(1000);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay({ initialMs: 100, maxMs: 5000, jitter: 0.5 }, 3);
      expect(d).toBeGreaterThanOrEqual(400);
      expect(d).toBeLessThanOrEqual(800);
    }
  });

  test("backoff - gives up after maxAttempts, and never overflows however long the outage", () => {
    const b = new Backoff({ initialMs: 1, maxMs: 10, maxAttempts: 2, jitter: 0 });
    expect(b.next()).toBe(1);
    expect(b.next()).toBe(2);
    expect(b.next()).toBeUndefined();
    expect(b.next()).toBeUndefined();
    expect(backoffDelay({ initialMs: 100, maxMs: 3000, jitter: 0 }, 10_000)).toBe(3000);
  });
});
