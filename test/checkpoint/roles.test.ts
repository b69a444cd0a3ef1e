// Reassigning host roles says what it changes, and a pull never silently gives one live node another's
// state: roles swapped since the checkpoint are refused unless the caller asks to restore by host index.
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { hostKey } from "../../src/checkpoint/layout.ts";
import { diffRoles, type Roles } from "../../src/checkpoint/roles.ts";
import { type CheckpointFleet, startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";
import { rejectsWith } from "../helpers/expect.ts";

describe("host roles", () => {
  let f: CheckpointFleet;
  let fleet: CheckpointFleet["fleet"];
  let hub: CheckpointFleet["hub"];
  beforeEach(async () => {
    f = await startCheckpointFleet();
    ({ fleet, hub } = f);
  });
  afterEach(() => f.close());

  const node = async (name: string) => {
    const h = await f.node(name, { bytes: 512 });
    return { ...h, id: h.agent.nodeId! };
  };

  test("assign - reports what it changes: nothing, a swap, a new host", async () => {
    const [a, b, c] = await Promise.all(["a", "b", "c"].map(node));
    const run = await fleet.createRun();
    const first = await fleet.checkpoints.assign(run, [a!.id, b!.id]);
    expect(first.changes.map((x) => x.text)).toEqual([
      `host 0: new host, node ${a!.id}`,
      `host 1: new host, node ${b!.id}`,
    ]);
    expect((await fleet.checkpoints.assign(run, [a!.id, b!.id])).changes).toEqual([]);
    const swapped = await fleet.checkpoints.assign(run, [b!.id, a!.id], [{ hostIdx: 0, nodeId: c!.id }]);
    expect(swapped.hosts.map((h) => h.nodeId)).toEqual([b!.id, a!.id]);
    expect(swapped.changes).toEqual([
      {
        hostIdx: 0,
        from: a!.id,
        to: b!.id,
        standby: { from: [], to: [c!.id] },
        text: `host 0: node ${a!.id} → node ${b!.id} (node ${b!.id} was host 1) (node ${a!.id} is now host 1); standby [] → [${c!.id}]`,
      },
      {
        hostIdx: 1,
        from: b!.id,
        to: a!.id,
        text: `host 1: node ${b!.id} → node ${a!.id} (node ${a!.id} was host 0) (node ${b!.id} is now host 0)`,
      },
    ]);
  });

  test("assign - a node given two roles is refused before any node is told", async () => {
    const [a, b] = await Promise.all(["a", "b"].map(node));
    const run = await fleet.createRun();
    const twice = await rejectsWith(fleet.checkpoints.assign(run, [a!.id, a!.id]), "INVALID_ARGUMENT");
    expect(twice.message).toMatch(/both host 0 and host 1/);
    const standby = await rejectsWith(
      fleet.checkpoints.assign(run, [a!.id, b!.id], [{ hostIdx: 0, nodeId: b!.id }]),
      "INVALID_ARGUMENT",
    );
    expect(standby.message).toMatch(/both host 1 and standby 0/);
    expect(await fleet.checkpoints.roles(run)).toBeNull();
  });

  test("pull - roles swapped since the checkpoint: refused, nothing restored; allowRoleChanges restores by host index and says whose", async () => {
    const [a, b] = await Promise.all(["a", "b"].map(node));
    const run = await fleet.createRun();
    await fleet.checkpoints.assign(run, [a!.id, b!.id]);
    const pushed = await fleet.checkpoints.push(run);
    expect(pushed.status).toBe("ok");
    const [savedA, savedB] = [a!.box.data, b!.box.data];
    await fleet.checkpoints.assign(run, [b!.id, a!.id]);

    const refused = await rejectsWith(fleet.checkpoints.pull(run, "latest"), "HOST_MISMATCH");
    expect(refused.message).toMatch(/roles moved between nodes since it was taken .*allowRoleChanges/);
    expect(a!.box.data).toBe(savedA);
    expect(b!.box.data).toBe(savedB);
    expect((await fleet.checkpoints.status(run)).pull.status).toBe("not_requested");

    const pulled = await fleet.checkpoints.pull(run, pushed.id, { allowRoleChanges: true });
    expect(pulled).toMatchObject({
      status: "ok",
      hosts: [
        { hostIdx: 0, nodeId: b!.id, status: "ok", restoresFrom: a!.id },
        { hostIdx: 1, nodeId: a!.id, status: "ok", restoresFrom: b!.id },
      ],
    });
    expect(Buffer.compare(b!.box.data, savedA)).toBe(0);
    expect(Buffer.compare(a!.box.data, savedB)).toBe(0);
  });

  test("pull - a node refuses a part another node wrote unless the hub says whose it is", async () => {
    const [a, b] = await Promise.all(["a", "b"].map(node));
    const run = await fleet.createRun();
    await fleet.checkpoints.assign(run, [a!.id, b!.id]);
    const pushed = await fleet.checkpoints.push(run);
    await fleet.checkpoints.assign(run, [b!.id, a!.id]);
    const [m] = await fleet.checkpoints.list(run);
    expect(m!.id).toBe(pushed.id);
    const partA = {
      hostIdx: 0,
      nodeId: a!.id,
      key: hostKey(run.id, pushed.id, 0),
      size: 512,
      sha256: "0".repeat(64),
    };
    const call = (extra: object) =>
      hub.checkpoints!.callNodes(
        run.id,
        [
          {
            dst: b!.id,
            method: "checkpoint.pull",
            payload: {
              runId: run.id,
              id: pushed.id,
              hostInfo: { hostIdx: 0, nHosts: 2 },
              part: partA,
              ...extra,
            },
          },
        ],
        5000,
      );
    const [refused] = await call({});
    expect(refused).toMatchObject({ ok: false, error: { code: "FLEETLINK_E_HOST_MISMATCH" } });
    expect((refused as { error: Error }).error.message).toMatch(/written by node .*not by this node/);
    const [told] = await call({ acceptFrom: a!.id });
    expect(told).toMatchObject({ ok: true });
  });

  test("pull - a host whose node was replaced (the old one holds no role now) restores by host index", async () => {
    const [a, b, c] = await Promise.all(["a", "b", "c"].map(node));
    const run = await fleet.createRun();
    await fleet.checkpoints.assign(run, [a!.id, b!.id]);
    await fleet.checkpoints.push(run);
    const savedA = a!.box.data;
    const r = await fleet.checkpoints.assign(run, [c!.id, b!.id]);
    expect(r.changes.map((x) => x.text)).toEqual([`host 0: node ${a!.id} → node ${c!.id}`]);
    const pulled = await fleet.checkpoints.pull(run, "latest");
    expect(pulled).toMatchObject({ status: "ok", hosts: [{ nodeId: c!.id, restoresFrom: a!.id }, {}] });
    expect(pulled.hosts[1]!.restoresFrom).toBeUndefined();
    expect(Buffer.compare(c!.box.data, savedA)).toBe(0);
  });
});

describe("diffRoles", () => {
  const roles = (ids: string[], standby: Record<number, string[]> = {}): Roles => ({
    runId: "r",
    nHosts: ids.length,
    hosts: ids.map((nodeId, hostIdx) => ({ hostIdx, nodeId, standby: standby[hostIdx] ?? [] })),
  });

  test("host indexes added and removed", () => {
    expect(diffRoles(roles(["a", "b", "c"]), roles(["a"])).map((c) => c.text)).toEqual([
      "host 1: removed (was node b)",
      "host 2: removed (was node c)",
    ]);
    expect(diffRoles(roles(["a"]), roles(["a", "b"]))).toEqual([
      { hostIdx: 1, from: null, to: "b", text: "host 1: new host, node b" },
    ]);
    expect(diffRoles(roles(["a"], { 0: ["s"] }), roles(["a"]))).toEqual([
      { hostIdx: 0, from: "a", to: "a", standby: { from: ["s"], to: [] }, text: "host 0: standby [s] → []" },
    ]);
  });
});
