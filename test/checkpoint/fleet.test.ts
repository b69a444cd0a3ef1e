// Coordinated checkpoints end to end: hub + node agents with state, over file:// and a real S3 server.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import type { ObjectStore } from "../../src/checkpoint/object-store.ts";
import { openObjectStore } from "../../src/checkpoint/open.ts";
import {
  type CheckpointFleet,
  type CheckpointNodeOptions,
  startCheckpointFleet,
} from "../helpers/checkpoint-fleet.ts";
import { TOKEN } from "../helpers/fleet.ts";
import { startS3rver } from "../helpers/s3rver.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Backend = { name: string; url: () => string; objects: () => ObjectStore };
let s3: Awaited<ReturnType<typeof startS3rver>>;
const s3url = (prefix: string) => `s3://${s3.bucket}/${prefix}`;
const s3opts = () => ({
  endpoint: s3.endpoint,
  region: s3.region,
  forcePathStyle: true,
  accessKeyId: s3.accessKeyId,
  secretAccessKey: s3.secretAccessKey,
});
const dir = mkdtempSync(join(tmpdir(), "fleetlink-ckpt-"));
beforeAll(async () => {
  s3 = await startS3rver();
});
afterAll(async () => {
  await s3?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
const backends: Backend[] = [
  {
    name: "file://",
    url: () => `file://${join(dir, `store-${n}`)}`,
    objects: () => openObjectStore(`file://${join(dir, `store-${n}`)}`),
  },
  {
    name: "s3 (s3rver)",
    url: () => s3url(`p${n}`),
    objects: () => openObjectStore(s3url(`p${n}`), s3opts()),
  },
];

for (const b of backends) {
  describe(`fleet checkpoints over ${b.name}`, () => {
    let f: CheckpointFleet | undefined;
    let hub: CheckpointFleet["hub"];
    let url: string;
    let fleet: CheckpointFleet["fleet"];
    const start = async (keep = 3) => {
      n++;
      f = await startCheckpointFleet({ objects: b.objects, checkpointKeep: keep });
      ({ hub, url, fleet } = f);
    };
    const node = (name: string, bytes: number, extra: CheckpointNodeOptions = {}) =>
      f!.node(name, {
        bytes,
        handlers: (box) => ({ digest: () => Buffer.from(box.data).toString("base64").slice(0, 24) }),
        ...extra,
      });
    afterEach(() => f?.close());

    test("push then pull restores byte-identical state on every host", async () => {
      await start();
      const hosts = await Promise.all([0, 1, 2, 3].map((i) => node(`h${i}`, 256 * 1024 + i)));
      const run = await fleet.createRun();
      await fleet.checkpoints.assign(
        run,
        hosts.map((h) => h.agent.nodeId!),
      );
      const saved = hosts.map((h) => h.box.data);
      const pushed = await fleet.checkpoints.push(run);
      expect(pushed).toMatchObject({
        status: "ok",
        hosts: [{ status: "ok" }, { status: "ok" }, { status: "ok" }, { status: "ok" }],
      });
      expect((await fleet.checkpoints.list(run)).map((c) => c.id)).toEqual([pushed.id]);
      for (const h of hosts) h.box.data = new Uint8Array([1, 2, 3]);
      const pulled = await fleet.checkpoints.pull(run, "latest");
      expect(pulled).toMatchObject({ status: "ok", id: pushed.id });
      for (const [i, h] of hosts.entries()) expect(Buffer.compare(h.box.data, saved[i]!)).toBe(0);
      expect((await fleet.checkpoints.status(run)).pull.status).toBe("ok");
    });

    test("two concurrent pulls: the second gets 409 with the current status; pushes likewise", async () => {
      await start();
      const hosts = await Promise.all([0, 1].map((i) => node(`c${i}`, 4 * 1024 * 1024)));
      const run = await fleet.createRun();
      await fleet.checkpoints.assign(
        run,
        hosts.map((h) => h.agent.nodeId!),
      );
      const ok = await fleet.checkpoints.push(run);
      const post = (path: string, body?: unknown) =>
        fetch(`${url}/v1/runs/${run.id}/checkpoints/${path}`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${TOKEN}`,
            ...(body ? { "content-type": "application/json" } : {}),
          },
          body: body ? JSON.stringify(body) : undefined,
        });
      const [a, c] = await Promise.all([post("pull", { id: ok.id }), post("pull", { id: "latest" })]);
      expect([a.status, c.status].sort()).toEqual([202, 409]);
      const conflict = (await (a.status === 409 ? a : c).json()) as {
        error: { code: string };
        status: { status: string };
      };
      expect(conflict.error.code).toBe("FLEETLINK_E_CONFLICT");
      expect(conflict.status.status).toBe("in_progress");
      const [p1, p2] = await Promise.all([post("push"), post("push")]);
      expect([p1.status, p2.status].sort()).toEqual([202, 409]);
      // Both settle; the run's status record is not clobbered by the refused request.
      for (let i = 0; i < 100 && (await fleet.checkpoints.status(run)).pull.status === "in_progress"; i++)
        await sleep(50);
      expect((await fleet.checkpoints.status(run)).pull).toMatchObject({ status: "ok", id: ok.id });
    });

    test("a corrupted part is caught on pull (size + SHA-256) with error kind checksum, and nothing is restored", async () => {
      await start();
      const h = await node("x0", 4096);
      const run = await fleet.createRun();
      await fleet.checkpoints.assign(run, [h.agent.nodeId!]);
      const pushed = await fleet.checkpoints.push(run);
      await b.objects().put(`${run.id}/${pushed.id}/host0/state`, new Uint8Array(4096).fill(9));
      const before = h.box.data;
      const pulled = await fleet.checkpoints.pull(run, pushed.id);
      expect(pulled.status).toBe("error");
      expect(pulled.error).toMatchObject({ kind: "checksum", hostIdx: 0 });
      expect(h.box.data).toBe(before);
    });

    test("a hostInfo that does not match the node's role is rejected and nothing is read or written", async () => {
      await start();
      const hosts = await Promise.all([0, 1].map((i) => node(`m${i}`, 1024)));
      const run = await fleet.createRun();
      await fleet.checkpoints.assign(
        run,
        hosts.map((h) => h.agent.nodeId!),
      );
      const id = "0190e2b4-0000-7000-8000-000000000000";
      const [wrong, outOfRange, noRole] = await hub.checkpoints!.callNodes(
        run.id,
        [
          {
            dst: hosts[0]!.agent.nodeId!,
            method: "checkpoint.push",
            payload: { runId: run.id, id, hostInfo: { hostIdx: 1, nHosts: 2 } },
          },
          {
            dst: hosts[1]!.agent.nodeId!,
            method: "checkpoint.push",
            payload: { runId: run.id, id, hostInfo: { hostIdx: 3, nHosts: 2 } },
          },
          {
            dst: hosts[1]!.agent.nodeId!,
            method: "checkpoint.pull",
            payload: { runId: "other", id, hostInfo: { hostIdx: 1, nHosts: 2 }, part: { hostIdx: 1 } },
          },
        ],
        5000,
      );
      for (const r of [wrong, outOfRange, noRole]) {
        expect(r!.ok).toBe(false);
        expect((r as { error: { code: string } }).error.code).toBe("FLEETLINK_E_HOST_MISMATCH");
      }
      expect(await b.objects().list(`${run.id}/`)).toEqual([]);
      expect(await fleet.checkpoints.list(run)).toEqual([]);
    });

    test("a host killed mid-push leaves no visible checkpoint; retention keeps the newest N", async () => {
      await start(2);
      let stall = false;
      const h0 = await node("k0", 1024);
      const h1 = await node("k1", 1024, {
        state: {
          snapshot: async () => {
            if (stall) await new Promise(() => {}); // never finishes: the node dies first
            return new Uint8Array([7]);
          },
          restore: () => {},
        },
      });
      const run = await fleet.createRun();
      await fleet.checkpoints.assign(run, [h0.agent.nodeId!, h1.agent.nodeId!]);
      const ids = [];
      for (let i = 0; i < 3; i++) ids.push((await fleet.checkpoints.push(run)).id);
      expect((await fleet.checkpoints.list(run)).map((c) => c.id)).toEqual(ids.slice(1));
      expect((await b.objects().list(`${run.id}/${ids[0]}/`)).length).toBe(0);
      stall = true;
      const push = fleet.checkpoints.push(run, { timeoutMs: 20_000 });
      await sleep(200);
      h1.agent.dropConnection();
      void h1.agent.stop({ timeoutMs: 50 });
      const res = await push;
      expect(res.status).toBe("error");
      // The host is gone: a kind that says so, not "internal" (a hub bug).
      expect(res.error).toMatchObject({ hostIdx: 1, kind: "host_unavailable" });
      expect(res.hosts[1]).toMatchObject({ status: "error", error: { kind: "host_unavailable" } });
      expect((await fleet.checkpoints.list(run)).map((c) => c.id)).toEqual(ids.slice(1));
      const all = await fleet.checkpoints.pull(run, res.id).catch((e) => e);
      expect(all.code).toBe("FLEETLINK_E_CHECKPOINT_NOT_FOUND");
    }, 30_000);

    test("a standby takes over a failed host, restored from its newest checkpoint, and the next call succeeds", async () => {
      await start();
      const h0 = await node("s0", 2048);
      const h1 = await node("s1", 2048);
      const sb = await node("standby", 16);
      const run = await fleet.createRun();
      await fleet.checkpoints.assign(
        run,
        [h0.agent.nodeId!, h1.agent.nodeId!],
        [{ hostIdx: 1, nodeId: sb.agent.nodeId! }],
      );
      await fleet.checkpoints.push(run);
      const h1State = h1.box.data;
      await h1.agent.stop({ timeoutMs: 100 });
      // The hub notices host 1 missed its heartbeat window and activates the standby.
      let cfg = await run.hostConfiguration();
      for (let i = 0; i < 100 && cfg.has(h1.agent.nodeId!); i++) {
        await sleep(100);
        cfg = await run.hostConfiguration();
      }
      expect(cfg.ids).toContain(sb.agent.nodeId);
      expect(Buffer.compare(sb.box.data, h1State)).toBe(0);
      const res = await cfg.call("digest", null, { quorum: "all", timeoutMs: 5000 });
      expect(res.replies.size).toBe(2);
      expect((await fleet.checkpoints.roles(run))!.hosts[1]).toMatchObject({
        nodeId: sb.agent.nodeId,
        standby: [],
      });
    }, 30_000);
  });
}

describe("checkpoint failures", () => {
  const wrongCreds = (prefix: string) =>
    openObjectStore(s3url(prefix), { ...s3opts(), accessKeyId: "WRONG", secretAccessKey: "WRONG" });
  /** One push of a one-host run whose hub and node use these checkpoint stores. */
  const pushWith = async (hubObjects: ObjectStore, name: string, nodeObjects: ObjectStore) => {
    const f = await startCheckpointFleet({ objects: () => hubObjects });
    try {
      const { agent } = await f.node(name, { checkpointStore: nodeObjects });
      const run = await f.fleet.createRun();
      await f.fleet.checkpoints.assign(run, [agent.nodeId!]);
      return await f.fleet.checkpoints.push(run);
    } finally {
      await f.close();
    }
  };

  test("bad S3 credentials: the push fails with error kind auth", async () => {
    const bad = wrongCreds("auth");
    const res = await pushWith(bad, "a", bad);
    expect(res.status).toBe("error");
    expect(res.error).toMatchObject({ kind: "auth", hostIdx: 0 });
  });

  test("a hub with wrong S3 credentials (its nodes' are right): the push fails with kind auth, not checksum", async () => {
    const res = await pushWith(
      wrongCreds("hub-auth"),
      "good-creds",
      openObjectStore(s3url("hub-auth"), s3opts()),
    );
    expect(res.status).toBe("error");
    expect(res.error).toMatchObject({ kind: "auth", hostIdx: 0 });
    expect(res.error!.message).toMatch(/refused the credentials/);
  });
});
