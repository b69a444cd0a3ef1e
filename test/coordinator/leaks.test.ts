// A long-lived coordinator does not grow: closed run handles leave the fleet, and a thousand calls that
// time out, finish or end early leave no listener on the caller's signal and no pending call behind.
import { getEventListeners } from "node:events";
import { afterEach, describe, expect, test } from "vitest";
import { IncompleteCallError } from "../../src/coordinator/errors.ts";
import { startFleet, type TestFleet } from "../helpers/fleet.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});
const fleetOf = async (): Promise<TestFleet> => {
  const f = await startFleet();
  cleanups.push(() => f.close());
  return f;
};

describe("leaks", () => {
  test("runs - a closed run handle leaves the fleet's set, and its stream leaves the hub", async () => {
    const f = await fleetOf();
    const fleet = await f.fleet();
    const runs = [];
    for (let i = 0; i < 30; i++) runs.push(await fleet.createRun());
    expect(fleet.runs.size).toBe(30);
    expect(f.hub.runs.subscribers).toBe(30);
    for (const r of runs.slice(0, 20)) await r.close();
    await runs[0]!.close(); // twice: a no-op
    expect(fleet.runs.size).toBe(10);
    const again = await fleet.run(runs[0]!.id);
    expect(fleet.runs.size).toBe(11);
    await again.close();
    await fleet.close();
    expect(fleet.runs.size).toBe(0);
    const t0 = Date.now();
    while (f.hub.runs.subscribers > 0 && Date.now() - t0 < 3000) await sleep(20);
    expect(f.hub.runs.subscribers).toBe(0);
  }, 20_000);

  test("calls - 1000 calls (timed out, answered, ended early) with one long-lived signal leave no abort listener and no pending call", async () => {
    const f = await fleetOf();
    const quick = await Promise.all(["q1", "q2"].map((n) => f.node(n, { work: (p) => p })));
    const slow = await f.node("slow", {
      work: async (p) => {
        await sleep(300);
        return p;
      },
    });
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const all = run.configuration([...quick, slow].map((a) => a.nodeId!));
    const ac = new AbortController();
    const signal = ac.signal;
    const listeners = () => getEventListeners(signal, "abort").length;
    expect(listeners()).toBe(0);
    const outcomes = { answered: 0, timedOut: 0, early: 0 };
    const one = async (i: number) => {
      switch (i % 3) {
        case 0: {
          // Quorum met by the quick nodes; the slow one's instruction is withdrawn.
          const r = await all.call("work", i, { quorum: "majority", timeoutMs: 5000, signal });
          expect(r.replies.size).toBeGreaterThanOrEqual(2);
          outcomes.answered++;
          return;
        }
        case 1: {
          const e = await all.call("work", i, { quorum: "all", timeoutMs: 40, signal }).catch((x) => x);
          expect(e).toBeInstanceOf(IncompleteCallError);
          outcomes.timedOut++;
          return;
        }
        default: {
          for await (const it of all.stream("work", i, { timeoutMs: 5000, signal })) {
            expect(it.ok).toBe(true);
            break;
          }
          outcomes.early++;
        }
      }
    };
    let peak = 0;
    for (let batch = 0; batch < 50; batch++) {
      await Promise.all(Array.from({ length: 20 }, (_, k) => one(batch * 20 + k)));
      peak = Math.max(peak, listeners());
      // Between batches nothing of the finished calls is left on the signal.
      expect(listeners()).toBe(0);
    }
    expect(outcomes).toEqual({ answered: 334, timedOut: 333, early: 333 });
    expect(listeners()).toBe(0);
    expect(run.pendingCalls).toBe(0);
    console.log(`1000 calls: ${JSON.stringify(outcomes)}; abort listeners after: ${listeners()}`);
  }, 60_000);

  test("timers - a closed fleet leaves no timer of its own behind", async () => {
    const f = await fleetOf();
    const a = await f.node("echo", { work: (p) => p });
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const base = timers();
    const fleet = await f.fleet();
    for (let i = 0; i < 5; i++) {
      const run = await fleet.createRun();
      await run.configuration([a.nodeId!]).call("work", i, { quorum: "all", timeoutMs: 2000 });
    }
    await fleet.close();
    await sleep(100);
    expect(timers()).toBeLessThanOrEqual(base);
  }, 20_000);
});
