// A node may switch transports across reconnects: an instruction running when the connection is lost on one
// transport is kept through the hello on the other, run once, and answered with exactly one stored reply.
import { afterEach, describe, expect, test } from "vitest";
import { startFleet } from "../helpers/fleet.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("transport switch", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  });

  for (const [from, to] of [
    ["ws", "http"],
    ["http", "ws"],
  ] as const)
    test(`transport switch - a long handler started over ${from}, connection lost, back over ${to}: run once, one reply stored`, async () => {
      const f = await startFleet();
      cleanups.push(() => f.close());
      const dials: ("ws" | "http")[] = [];
      let started = 0;
      const agent = await f.node(
        `switch-${from}`,
        {
          work: async (p) => {
            started++;
            await sleep(1500);
            return { done: p };
          },
        },
        {
          // Each dial takes the other transport than the last one.
          transport: () => {
            const t = dials.length % 2 === 0 ? from : to;
            dials.push(t);
            return t;
          },
        },
      );
      expect(dials).toEqual([from]);
      const fleet = await f.fleet();
      const run = await fleet.createRun();
      const call = run.configuration([agent.nodeId!]).call("work", 7, { quorum: "all", timeoutMs: 15_000 });
      await expect.poll(() => started, { timeout: 3000 }).toBe(1);
      agent.dropConnection();
      await expect.poll(() => dials.length, { timeout: 3000 }).toBe(2);
      expect(dials).toEqual([from, to]);
      const r = await call;
      expect(r.replies.get(agent.nodeId!)).toEqual({ done: 7 });
      expect(started).toBe(1);
      // The new hello names the running instruction: even if the hub gave its lease back when the old connection
      // closed, the hello leases it to the new session without a new delivery, so no attempt is spent.
      const [ins] = await f.store.listInstructions(run.id);
      expect(ins!.attempts).toBe(1);
      expect(await f.store.getReplies(run.id, [ins!.id])).toHaveLength(1);
      // The node stays on the new transport and keeps serving.
      const again = await run
        .configuration([agent.nodeId!])
        .call("work", 8, { quorum: "all", timeoutMs: 15_000 });
      expect(again.replies.get(agent.nodeId!)).toEqual({ done: 8 });
      expect(started).toBe(2);
      expect(dials).toEqual([from, to]);
    }, 30_000);
});
