// run.hosts() gives the host roles in host order; hostConfiguration() is the same nodes as a (sorted) set.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, test } from "vitest";
import { nodeCheckpoints } from "../../src/checkpoint/node-side.ts";
import { NodeAgent } from "../../src/node/agent.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet } from "../helpers/fleet.ts";

let f: TestFleet;
let objects: string;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
  await f.close();
  rmSync(objects, { recursive: true, force: true });
});

test("hosts - run.hosts() is in host order, not sorted by id", async () => {
  objects = mkdtempSync(join(tmpdir(), "fleetlink-hosts-"));
  f = await startFleet({ checkpointStore: `file://${objects}` });
  const agents = await Promise.all(
    ["h0", "h1", "h2"].map(async (name) => {
      const a = new NodeAgent({
        hubs: [f.url],
        name,
        enrollToken: ENROLL_TOKEN,
        handlers: {},
        plugins: [
          nodeCheckpoints({
            state: { snapshot: () => new Uint8Array([1]), restore: async () => {} },
            objects: `file://${objects}`,
          }),
        ],
      });
      await a.start();
      cleanups.push(() => a.stop({ timeoutMs: 200 }));
      return a;
    }),
  );
  const order = agents
    .map((a) => a.nodeId!)
    .sort()
    .reverse(); // deliberately not ascending
  const fleet = await f.fleet();
  const run = await fleet.createRun();
  await fleet.checkpoints.assign(run.id, order);
  expect(await run.hosts()).toEqual(order);
  expect((await run.hostConfiguration()).ids).toEqual([...order].sort());
});
