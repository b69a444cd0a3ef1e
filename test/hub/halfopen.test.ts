// Short version of `npm run soak:halfopen`: nodes moving between replicas over half-open connections.
import { expect, test } from "vitest";
import { runHalfOpenSoak } from "../helpers/halfopen.ts";

test("half-open - 150 sequential majority→all calls while nodes are moved between replicas over half-open paths: 0 failures", async () => {
  const r = await runHalfOpenSoak({ calls: 150, chaosEveryMs: 400 });
  expect(r.moves).toBeGreaterThan(5);
  expect(r.failures).toEqual([]);
  // A stall is bounded by the node's liveness check (2 × 250 ms heartbeat) plus the move, not by timeouts.
  expect(r.maxCallMs).toBeLessThan(3000);
}, 120_000);
