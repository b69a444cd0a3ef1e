// The hub decides every object key (`<run>/<id>/host<k>/…`): a host cannot make its run's manifest name
// another run's or another host's object, and an honest node never reads outside its own run and host.
import { createHash } from "node:crypto";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { restoreHubSnapshot } from "../../src/checkpoint/hub-state.ts";
import {
  checkPart,
  hostKey,
  listCheckpoints,
  type Manifest,
  manifestKey,
} from "../../src/checkpoint/layout.ts";
import type { ObjectStore } from "../../src/checkpoint/object-store.ts";
import { openObjectStore } from "../../src/checkpoint/open.ts";
import { newId } from "../../src/protocol/ids.ts";
import { type CheckpointFleet, startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";
import { rejectsWith } from "../helpers/expect.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Records every key read through it. */
const spied = (inner: ObjectStore, reads: string[]): ObjectStore => {
  const read = <T>(k: string, f: () => T): T => {
    reads.push(k);
    return f();
  };
  return {
    url: inner.url,
    put: (k, b) => inner.put(k, b),
    get: (k) => read(k, () => inner.get(k)),
    getBytes: (k) => read(k, () => inner.getBytes(k)),
    head: (k) => read(k, () => inner.head(k)),
    list: (p) => read(p, () => inner.list(p)),
    delete: (ks) => inner.delete(ks),
    close: () => inner.close(),
  };
};

/** Every manifest in the store, of every run. */
const allManifests = async (objects: ObjectStore): Promise<Manifest[]> => {
  const out: Manifest[] = [];
  for (const o of await objects.list(""))
    if (o.key.endsWith("/MANIFEST.json"))
      out.push(JSON.parse(new TextDecoder().decode(await objects.getBytes(o.key))) as Manifest);
  return out;
};

describe("checkpoint keys are the hub's", () => {
  let f: CheckpointFleet;
  let hub: CheckpointFleet["hub"];
  let fleet: CheckpointFleet["fleet"];
  let objects: ObjectStore;
  beforeEach(async () => {
    f = await startCheckpointFleet();
    ({ hub, fleet } = f);
    objects = openObjectStore(f.objectsUrl);
  });
  afterEach(() => f.close());

  const honest = async (
    name: string,
    o: { reads?: string[]; standby?: { runId: string; hostIdx: number; intervalMs?: number } } = {},
  ) => {
    const own = openObjectStore(f.objectsUrl);
    return f.node(name, {
      bytes: 2048,
      checkpointStore: o.reads ? spied(own, o.reads) : own,
      ...(o.standby ? { standby: o.standby } : {}),
    });
  };
  /** Run B: one honest host, one complete checkpoint; its part is what the attacks below point at. */
  const victimRun = async () => {
    const b = await honest("victim");
    const run = await fleet.createRun();
    await fleet.checkpoints.assign(run, [b.agent.nodeId!]);
    const pushed = await fleet.checkpoints.push(run);
    expect(pushed.status).toBe("ok");
    const [m] = await listCheckpoints(objects, run.id);
    return { run, state: b.box.data, part: m!.hosts[0]! };
  };

  test("push - a host replying with another run's (or host's) key fails with host_mismatch; no manifest names it", async () => {
    const victim = await victimRun();
    // A node that speaks the checkpoint methods itself (no SDK state) and lies about where it wrote.
    const told: unknown[] = [];
    let lie: (p: { runId: string; id: string }) => string = () => victim.part.key;
    const { agent: evil } = await f.node("evil", {
      state: undefined,
      handlers: () => ({
        "checkpoint.assign": () => ({ ok: true }),
        "checkpoint.push": (p) => {
          const q = p as { runId: string; id: string; key: string };
          told.push(q.key);
          return { ...victim.part, nodeId: "evil", hostIdx: 0, key: lie(q) };
        },
      }),
    });
    const h1 = await honest("a1");
    const run = await fleet.createRun();
    await fleet.checkpoints.assign(run, [evil.nodeId!, h1.agent.nodeId!]);
    const lies: ((p: { runId: string; id: string }) => string)[] = [
      () => victim.part.key, // another run's part, with its true size and sha256
      (p) => hostKey(p.runId, p.id, 1), // this run's other host
      (p) => `${p.runId}/${p.id}/host0/../../../${victim.part.key}`, // escapes its prefix
      (p) => `${p.runId}/${p.id}/host0/other`, // inside its prefix, but not the key it was told
    ];
    for (const l of lies) {
      lie = l;
      const res = await fleet.checkpoints.push(run);
      expect(res.status).toBe("error");
      expect(res.error).toMatchObject({ kind: "host_mismatch", hostIdx: 0 });
      expect(res.hosts[0]).toMatchObject({ status: "error", error: { kind: "host_mismatch" } });
      expect(told.at(-1)).toBe(hostKey(run.id, res.id, 0)); // the push told it exactly where to write
    }
    expect(await fleet.checkpoints.list(run)).toEqual([]);
    const manifests = await allManifests(objects);
    expect(manifests.map((m) => m.runId)).toEqual([victim.run.id]);
    for (const m of manifests)
      for (const p of m.hosts) {
        expect(p.nodeId).not.toBe(evil.nodeId);
        expect(p.key.startsWith(`${m.runId}/${m.id}/host${p.hostIdx}/`)).toBe(true);
      }
  });

  test("pull - an honest node never reads another run's part, whatever a manifest says", async () => {
    const victim = await victimRun();
    const run = await fleet.createRun();
    const reads: string[] = [];
    const standbyReads: string[] = [];
    const a0 = await honest("a0", { reads });
    const sb = await honest("sb", {
      reads: standbyReads,
      standby: { runId: run.id, hostIdx: 0, intervalMs: 50 },
    });
    await fleet.checkpoints.assign(run, [a0.agent.nodeId!], [{ hostIdx: 0, nodeId: sb.agent.nodeId! }]);
    expect((await fleet.checkpoints.push(run)).status).toBe("ok");
    // A manifest in run A's prefix (written by anyone with store access) naming run B's part: the newest.
    const forgedId = newId();
    const forged = {
      hostIdx: 0,
      nodeId: a0.agent.nodeId!,
      key: victim.part.key,
      size: victim.part.size,
      sha256: victim.part.sha256,
    };
    const m: Manifest = { id: forgedId, runId: run.id, createdAt: Date.now(), nHosts: 1, hosts: [forged] };
    await objects.put(manifestKey(run.id, forgedId), new TextEncoder().encode(JSON.stringify(m)));
    const mine = a0.box.data;

    // The hub refuses to start the pull ...
    await rejectsWith(fleet.checkpoints.pull(run, "latest"), "HOST_MISMATCH");
    await rejectsWith(fleet.checkpoints.pull(run, forgedId), "HOST_MISMATCH");
    // ... and the node refuses the part even when told to pull it directly.
    const [r] = await hub.checkpoints!.callNodes(
      run.id,
      [
        {
          dst: a0.agent.nodeId!,
          method: "checkpoint.pull",
          payload: { runId: run.id, id: forgedId, hostInfo: { hostIdx: 0, nHosts: 1 }, part: forged },
        },
      ],
      5000,
    );
    expect(r).toMatchObject({ ok: false, error: { code: "FLEETLINK_E_HOST_MISMATCH" } });
    // A standby refreshing, then activated, on that "latest" refuses it too.
    await sleep(300);
    await rejectsWith(fleet.checkpoints.activate(run, 0), "HOST_MISMATCH");
    expect((await fleet.checkpoints.roles(run))!.hosts[0]!.nodeId).toBe(a0.agent.nodeId);

    expect(a0.box.data).toBe(mine);
    expect(Buffer.compare(sb.box.data, victim.state)).not.toBe(0);
    expect(reads.length + standbyReads.length).toBeGreaterThan(0);
    for (const k of [...reads, ...standbyReads]) expect(k.startsWith(`${run.id}/`)).toBe(true);
  });

  test("hub snapshot - a restore refuses a manifest whose part lies outside the hub's own prefix", async () => {
    const id = newId();
    const bytes = new Uint8Array([1, 2, 3]);
    await objects.put("elsewhere/db.sqlite", bytes);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const part = { hostIdx: 0, nodeId: "hub", key: "elsewhere/db.sqlite", size: 3, sha256 };
    const m: Manifest = { id, runId: "hub", createdAt: Date.now(), nHosts: 1, hosts: [part] };
    await objects.put(manifestKey("hub", id), new TextEncoder().encode(JSON.stringify(m)));
    await rejectsWith(
      restoreHubSnapshot(objects, join(f.dir, "never.db"), "latest", { force: true }),
      "HOST_MISMATCH",
    );
  });
});

describe("checkPart", () => {
  const run = "0190e2b4-0000-7000-8000-00000000000a";
  const id = "0190e2b4-0000-7000-8000-00000000000b";
  const ok = { hostIdx: 1, nodeId: "n", key: hostKey(run, id, 1), size: 3, sha256: "a".repeat(64) };

  test("accepts a part under its own run, checkpoint and host prefix", () => {
    expect(checkPart(ok, run, id, 1)).toBe(ok);
    expect(checkPart({ ...ok, key: `${run}/${id}/host1/db.sqlite` }, run, id, 1).key).toMatch(/db\.sqlite$/);
  });

  test("refuses another run, checkpoint or host, an escaping key, and no part as HOST_MISMATCH", () => {
    const bad = [
      { ...ok, key: hostKey("0190e2b4-0000-7000-8000-00000000000c", id, 1) },
      { ...ok, key: hostKey(run, "0190e2b4-0000-7000-8000-00000000000c", 1) },
      { ...ok, key: hostKey(run, id, 0) },
      { ...ok, key: hostKey(run, id, 11) },
      { ...ok, key: `${run}/${id}/host1/../host0/state` },
      { ...ok, key: `${run}/${id}/host1` },
      { ...ok, hostIdx: 0 },
      { ...ok, key: 7 },
      undefined,
      null,
    ];
    for (const p of bad)
      expect(() => checkPart(p, run, id, 1)).toThrow(
        expect.objectContaining({ code: "FLEETLINK_E_HOST_MISMATCH" }),
      );
  });

  test("refuses a part without a valid size and sha256 as CHECKSUM_MISMATCH", () => {
    for (const p of [
      { ...ok, size: -1 },
      { ...ok, size: 1.5 },
      { ...ok, sha256: "zz" },
      { ...ok, sha256: undefined },
    ])
      expect(() => checkPart(p, run, id, 1)).toThrow(
        expect.objectContaining({ code: "FLEETLINK_E_CHECKSUM_MISMATCH" }),
      );
  });

  test("a run or checkpoint id with a slash is refused before any key is made", () => {
    expect(() => hostKey("a/b", id, 0)).toThrow(
      expect.objectContaining({ code: "FLEETLINK_E_INVALID_ARGUMENT" }),
    );
    expect(() => hostKey(run, "..", 0)).toThrow(
      expect.objectContaining({ code: "FLEETLINK_E_INVALID_ARGUMENT" }),
    );
  });
});
