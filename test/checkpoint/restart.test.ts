// A host node that restarts (same identity) keeps its place in the run: the hub tells it its role again before
// each push and pull, from the run's role record, so no re-assign is needed.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { type CheckpointFleet, startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";

describe("checkpoints after a host restarts", () => {
  let f: CheckpointFleet | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await f?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("restart - a host restarted on its identity file pulls its state back and pushes again, without a re-assign", async () => {
    f = await startCheckpointFleet();
    dir = mkdtempSync(join(tmpdir(), "fleetlink-ckpt-restart-"));
    const identityFile = (i: number) => join(dir!, `worker-${i}.json`);
    const hosts = await Promise.all(
      [0, 1, 2].map((i) => f!.node(`worker-${i}`, { bytes: 4096, identityFile: identityFile(i) })),
    );
    const run = await f.fleet.createRun();
    const ids = hosts.map((h) => h.agent.nodeId!);
    await f.fleet.checkpoints.assign(run, ids);
    const pushed = await f.fleet.checkpoints.push(run);
    expect(pushed).toMatchObject({ status: "ok" });
    const saved = hosts[2]!.box.data;

    await hosts[2]!.agent.stop({ timeoutMs: 100 });
    // Same identity, fresh memory: no role, and state that is not the checkpoint's.
    const again = await f.node("worker-2", { bytes: 4096, identityFile: identityFile(2) });
    expect(again.agent.nodeId).toBe(ids[2]);
    expect(Buffer.compare(again.box.data, saved)).not.toBe(0);

    // The node still refuses a role it was not assigned: a push naming its host index is not one.
    const [direct] = await f.hub.checkpoints!.callNodes(
      run.id,
      [
        {
          dst: ids[2]!,
          method: "checkpoint.push",
          payload: { runId: run.id, id: pushed.id, hostInfo: { hostIdx: 2, nHosts: 3 } },
        },
      ],
      5000,
    );
    expect(direct).toMatchObject({ ok: false, error: { code: "FLEETLINK_E_HOST_MISMATCH" } });

    const pulled = await f.fleet.checkpoints.pull(run, "latest");
    expect(pulled).toMatchObject({
      status: "ok",
      id: pushed.id,
      hosts: [{ status: "ok" }, { status: "ok" }, { status: "ok", nodeId: ids[2] }],
    });
    expect(Buffer.compare(again.box.data, saved)).toBe(0);
    expect(await f.fleet.checkpoints.push(run)).toMatchObject({
      status: "ok",
      hosts: [{ status: "ok" }, { status: "ok" }, { status: "ok" }],
    });
    // The roles are as assigned: nothing was reassigned to make this work.
    expect((await f.fleet.checkpoints.roles(run))!.hosts.map((h) => h.nodeId)).toEqual(ids);
  }, 30_000);
});
