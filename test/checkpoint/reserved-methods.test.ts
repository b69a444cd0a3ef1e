// `checkpoint.*` instructions come from the hub only: a coordinator cannot push one to a node (over HTTP or its run
// stream), so a node takes a host role only from the hub that records it.
import { afterEach, expect, test } from "vitest";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

let f: TestFleet;
afterEach(async () => {
  await f.close();
});

test("reserved methods - a coordinator's push of checkpoint.assign is refused naming the field; the node gets nothing", async () => {
  f = await startFleet();
  const seen: string[] = [];
  const node = await f.node("host", {
    "checkpoint.assign": () => {
      seen.push("assign");
      return null;
    },
  });
  const fleet = await f.fleet();
  const run = await fleet.createRun();
  const res = await fetch(`${f.url}/v1/runs/${run.id}/instructions`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({
      items: [
        { dst: node.nodeId, method: "echo", ttlMs: 5000 },
        {
          dst: node.nodeId,
          method: "checkpoint.assign",
          payload: { runId: run.id, hostIdx: 0, nHosts: 1 },
          ttlMs: 5000,
        },
      ],
    }),
  });
  expect(res.status).toBe(400);
  const { error } = (await res.json()) as { error: { code: string; field: string; message: string } };
  expect(error).toMatchObject({ code: "FLEETLINK_E_INVALID_ARGUMENT", field: "items[1].method" });
  expect(error.message).toMatch(/are the hub's own; drive checkpoints with fleetlink checkpoint/);
  // Over the SDK's run stream too; all or none: the echo beside it was not pushed either.
  await expect(
    run.call(
      [node.nodeId!],
      "checkpoint.assign",
      { runId: run.id, hostIdx: 0, nHosts: 1 },
      { timeoutMs: 3000 },
    ),
  ).rejects.toThrow(/hub's own/);
  expect((await f.store.stats()).instructions.pending + (await f.store.stats()).instructions.leased).toBe(0);
  expect(seen).toEqual([]);
});
