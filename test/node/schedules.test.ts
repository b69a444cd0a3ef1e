// The agent's dead-path rule: liveness rides on the heartbeats' answers, so an idle node pings nothing.
import { expect, test } from "vitest";
import { agentLiveness } from "../../src/node/schedules.ts";
import { Liveness } from "../../src/stream/liveness.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("agent liveness - a path answering a heartbeat every interval is never pinged; a silent one is dropped within 1.5 intervals", async () => {
  const every = 200;
  const l = new Liveness(agentLiveness(every));
  let pings = 0;
  let droppedAt = 0;
  const w = l.watch({ ping: () => pings++, drop: () => (droppedAt = Date.now()) });
  // A heartbeat's answer every interval (a loaded machine answers a little late: 10 % of an interval).
  for (let i = 0; i < 5; i++) {
    await sleep(every + 10);
    w.heard();
  }
  expect(pings).toBe(0);
  expect(droppedAt).toBe(0);
  const lastHeard = Date.now();
  await sleep(2 * every);
  expect(pings).toBe(1);
  expect(droppedAt).toBeGreaterThan(lastHeard + every);
  // Generous for a shared machine's timers; the rule's own bound is 1.5 intervals.
  expect(droppedAt - lastHeard).toBeLessThan(1.85 * every);
  l.close();
});
