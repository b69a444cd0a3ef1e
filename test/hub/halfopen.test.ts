// Short version of `npm run soak:halfopen`: nodes moving between replicas over half-open connections.
import { expect, test } from "vitest";
import { runHalfOpenSoak } from "../helpers/halfopen.ts";

test("half-open - 200 sequential majority→all calls while nodes are moved between replicas over half-open paths: 0 failures", async () => {
  const r = await runHalfOpenSoak({ calls: 200, chaosEveryMs: 500 });
  expect(r.moves).toBeGreaterThan(5);
  expect(r.failures).toEqual([]);
  // A stall is bounded by the node's dead-path rule (1.4 of its 1 s heartbeat interval after its last answered
  // heartbeat, schedules.ts) plus the move.
  expect(r.maxCallMs).toBeLessThan(2500);
}, 120_000);
