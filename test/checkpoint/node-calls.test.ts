// The hub calls nodes for checkpoints through the delivery path: replies are read back when the store says
// something changed, not by polling; a pull's completion is its reply, not a stream of pull_status calls.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { afterEach, describe, expect, test } from "vitest";
import { NodeCalls } from "../../src/checkpoint/node-calls.ts";
import { readAll } from "../../src/checkpoint/object-store.ts";
import { createHub } from "../../src/hub/server.ts";
import { encodePayload } from "../../src/protocol/wire.ts";
import { openStore } from "../../src/store/open.ts";
import type { NewInstruction, Store } from "../../src/store/store.ts";
import { silentLogger } from "../../src/stream/channel.ts";
import { type CheckpointFleet, startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";
import { ENROLL_TOKEN, TOKEN } from "../helpers/fleet.ts";
import { describePg, dropSchema, pgSchemaUrl } from "../helpers/postgres.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Counts the store reads a waiting call could poll with, and records every method pushed to a node. */
const spy = (store: Store) => {
  const seen = { reads: 0, methods: [] as string[] };
  const s = store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  for (const m of ["getReplies", "claimReplies", "listRecords", "getInstructions"]) {
    const orig = s[m]!.bind(store);
    s[m] = (...a) => {
      seen.reads++;
      return orig(...a);
    };
  }
  const push = s.pushInstructions!.bind(store);
  s.pushInstructions = (runId, items) => {
    for (const i of items as NewInstruction[]) seen.methods.push(i.method);
    return push(runId, items);
  };
  const batch = s.pushBatch!.bind(store);
  s.pushBatch = (calls) => {
    for (const c of calls as { items: NewInstruction[] }[])
      for (const i of c.items) seen.methods.push(i.method);
    return batch(calls);
  };
  return seen;
};

describe("checkpoint calls without polling", () => {
  let f: CheckpointFleet;
  afterEach(() => f?.close());

  test("push - a host that takes 1 s costs a handful of store reads, not a poll every 5 ms", async () => {
    const store = await openStore("memory:");
    // Spied before the hub wraps it (its metrics decorator keeps the methods it first sees).
    const seen = spy(store);
    f = await startCheckpointFleet({ store });
    const fast = await f.node("fast");
    const slow = await f.node("slow", {
      state: {
        snapshot: async () => {
          await sleep(1000);
          return new Uint8Array([1, 2, 3]);
        },
        restore: () => {},
      },
    });
    const run = await f.store.createRun();
    const cp = f.hub.checkpoints!;
    await cp.assign(run.id, [fast.agent.nodeId!, slow.agent.nodeId!]);
    seen.reads = 0;
    seen.methods = [];
    const started = Date.now();
    const { done } = await cp.startPush(run.id);
    expect(await done).toMatchObject({ status: "ok", hosts: [{ status: "ok" }, { status: "ok" }] });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    // One read per reply stored (and per push), plus the claims: 5 ms polling would have made ~200.
    expect(seen.reads).toBeLessThanOrEqual(20);
    // Each host is told its role again first (a restarted host has lost it), then pushes.
    expect(seen.methods).toEqual([
      "checkpoint.assign",
      "checkpoint.assign",
      "checkpoint.push",
      "checkpoint.push",
    ]);
  }, 20_000);

  test("pull - each host's status changes when its reply arrives; no pull_status instruction is sent", async () => {
    const store = await openStore("memory:");
    // Spied before the hub wraps it (its metrics decorator keeps the methods it first sees).
    const seen = spy(store);
    f = await startCheckpointFleet({ store });
    let restoring = false;
    const fast = await f.node("fast");
    const slow = await f.node("slow", {
      state: {
        snapshot: () => new Uint8Array([4, 5, 6]),
        restore: async (r: Readable) => {
          restoring = true;
          await readAll(r);
          await sleep(1000);
        },
      },
    });
    const run = await f.store.createRun();
    const cp = f.hub.checkpoints!;
    await cp.assign(run.id, [fast.agent.nodeId!, slow.agent.nodeId!]);
    expect(await (await cp.startPush(run.id)).done).toMatchObject({ status: "ok" });
    seen.reads = 0;
    seen.methods = [];
    const { id, done } = await cp.startPull(run.id, "latest");
    // While the slow host restores, the fast one is already done: the non-blocking status says so.
    let mid = await cp.status(run.id, "pull");
    for (let i = 0; i < 100 && mid.hosts[0]!.status !== "ok"; i++) {
      await sleep(20);
      mid = await cp.status(run.id, "pull");
    }
    expect(restoring).toBe(true);
    expect(mid).toMatchObject({
      status: "in_progress",
      id,
      hosts: [{ status: "ok" }, { status: "in_progress" }],
    });
    expect(await done).toMatchObject({ status: "ok", id, hosts: [{ status: "ok" }, { status: "ok" }] });
    expect(await cp.status(run.id, "pull")).toMatchObject({ status: "ok", id });
    expect(seen.methods).toEqual([
      "checkpoint.assign",
      "checkpoint.assign",
      "checkpoint.pull",
      "checkpoint.pull",
    ]);
    expect(seen.reads).toBeLessThanOrEqual(20);
  }, 20_000);

  test("pull - a restore longer than six leases completes: progress keeps the instruction's lease", async () => {
    const store = await openStore("memory:", { leaseMs: 300 });
    // Claims every 100 ms: an instruction whose lease ran out would be redelivered and fail after 3 attempts.
    f = await startCheckpointFleet({ store, pollIntervalMs: 100 });
    const h = await f.node("long", {
      heartbeatIntervalMs: 200,
      state: {
        snapshot: () => new Uint8Array([7]),
        restore: async (r: Readable) => {
          await readAll(r);
          await sleep(2000);
        },
      },
    });
    const run = await store.createRun();
    const cp = f.hub.checkpoints!;
    await cp.assign(run.id, [h.agent.nodeId!]);
    expect(await (await cp.startPush(run.id)).done).toMatchObject({ status: "ok" });
    const { done } = await cp.startPull(run.id, "latest");
    expect(await done).toMatchObject({ status: "ok", hosts: [{ status: "ok" }] });
  }, 20_000);

  test("pull - a node that dies mid-restore ends the pull with host_unavailable, not a wait for the timeout", async () => {
    f = await startCheckpointFleet();
    const h = await f.node("dies", {
      heartbeatIntervalMs: 200,
      state: {
        snapshot: () => new Uint8Array([8]),
        restore: () => new Promise<void>(() => {}), // never finishes: the node dies first
      },
    });
    const run = await f.store.createRun();
    const cp = f.hub.checkpoints!;
    await cp.assign(run.id, [h.agent.nodeId!]);
    expect(await (await cp.startPush(run.id)).done).toMatchObject({ status: "ok" });
    const { done } = await cp.startPull(run.id, "latest");
    await sleep(200);
    const started = Date.now();
    await h.agent.stop({ timeoutMs: 50 });
    const st = await done;
    expect(st).toMatchObject({ status: "error", error: { kind: "host_unavailable", hostIdx: 0 } });
    expect(Date.now() - started).toBeLessThan(5000);
  }, 20_000);
});

/** Two replicas' stores on one database: a SQLite file, or a PostgreSQL schema of its own. */
const backends = [
  {
    name: "sqlite",
    run: describe,
    db: (dir: string) => ({ url: `sqlite:${join(dir, "fleet.db")}`, drop: async () => {} }),
  },
  {
    name: "postgres",
    run: describePg,
    db: () => {
      const { url, schema } = pgSchemaUrl("ckptcalls");
      return { url, drop: () => dropSchema(schema) };
    },
  },
];

for (const be of backends)
  be.run(`checkpoint calls across replicas (${be.name})`, () => {
    let f: CheckpointFleet | undefined;
    afterEach(() => f?.close());

    test("push and pull - replica A drives hosts connected to replica B: their replies reach A through the store's watch", async () => {
      const dir = mkdtempSync(join(tmpdir(), "fleetlink-ckpt-replicas-"));
      const db = be.db(dir);
      const objects = `file://${join(dir, "objects")}`;
      const storeA = await openStore(db.url);
      const storeB = await openStore(db.url);
      f = await startCheckpointFleet({ store: storeA, objects: () => objects });
      const b = createHub({ store: storeB, token: TOKEN, enrollToken: ENROLL_TOKEN, sweepIntervalMs: 50 });
      try {
        const hubB = await b.listen();
        const h0 = await f.node("b0", { hubs: [hubB] });
        const h1 = await f.node("b1", { hubs: [hubB] });
        const run = await storeA.createRun();
        const cp = f.hub.checkpoints!;
        await cp.assign(run.id, [h0.agent.nodeId!, h1.agent.nodeId!]);
        const saved = [h0.box.data, h1.box.data];
        const started = Date.now();
        expect(await (await cp.startPush(run.id)).done).toMatchObject({ status: "ok" });
        h0.box.data = new Uint8Array([0]);
        h1.box.data = new Uint8Array([0]);
        expect(await (await cp.startPull(run.id, "latest")).done).toMatchObject({ status: "ok" });
        // Without notifications, push and pull would each wait for the 2 s fallback re-check (≥ 4 s in all):
        // the notifications carried the replies.
        expect(Date.now() - started).toBeLessThan(3500);
        expect([h0.box.data, h1.box.data]).toEqual(saved);
      } finally {
        await f.close();
        f = undefined;
        await b.close();
        await storeB.close();
        await db.drop();
        rmSync(dir, { recursive: true, force: true });
      }
    }, 30_000);
  });

describe("NodeCalls", () => {
  /** A store with one run and one online node; `deaf` hides its change notifications. */
  const setup = async (deaf = false) => {
    const store = await openStore("memory:");
    const node = await store.registerNode({ name: "n", heartbeatIntervalMs: 60_000 });
    await store.heartbeat(node.id, 60_000);
    const run = await store.createRun();
    const seen = spy(store);
    const view = deaf
      ? new Proxy(store, {
          get: (t, k) => {
            if (k === "watch") return () => () => {};
            const v = (t as unknown as Record<string | symbol, unknown>)[k];
            return typeof v === "function" ? v.bind(t) : v;
          },
        })
      : store;
    /** Answers the first instruction waiting for the node, as its stream would. */
    const answer = async (value: unknown) => {
      const [ins] = await store.claimInstructions({ nodeIds: [node.id], limit: 1 });
      await store.storeReplies([
        { runId: run.id, nodeId: node.id, replyTo: ins!.id, payload: encodePayload(value) },
      ]);
    };
    return { store, view, node, run, seen, answer };
  };

  test("node-calls - a reply is delivered on the store's change notification, without waiting for the re-check", async () => {
    const { store, node, run, answer } = await setup();
    const calls = new NodeCalls({ store, changed: () => {}, log: silentLogger, recheckMs: 60_000 });
    const p = calls.call(run.id, [{ dst: node.id, method: "m", payload: 1 }], 10_000);
    await sleep(50);
    const started = Date.now();
    await answer({ ok: 1 });
    expect(await p).toEqual([{ ok: true, value: { ok: 1 } }]);
    expect(Date.now() - started).toBeLessThan(1000);
    expect((await store.stats()).replies.pending).toBe(0); // claimed: none left for a run stream
    calls.stop();
    await store.close();
  });

  test("node-calls - a missed notification is caught by the bounded re-check, and only then", async () => {
    const { store, view, node, run, seen, answer } = await setup(true);
    const calls = new NodeCalls({ store: view, changed: () => {}, log: silentLogger, recheckMs: 400 });
    const p = calls.call(run.id, [{ dst: node.id, method: "m", payload: 1 }], 10_000);
    await sleep(50);
    await answer("late");
    const before = seen.reads;
    const answered = Date.now();
    expect(await p).toEqual([{ ok: true, value: "late" }]);
    expect(Date.now() - answered).toBeLessThan(1000);
    // One re-check read found it (plus the claim): nothing polled in between.
    expect(seen.reads - before).toBeLessThanOrEqual(3);
    calls.stop();
    await store.close();
  });

  test("node-calls - an unanswered call ends with the sweep's error reply when its TTL runs out", async () => {
    const { store, node, run } = await setup();
    const calls = new NodeCalls({ store, changed: () => {}, log: silentLogger, recheckMs: 60_000 });
    const p = calls.call(run.id, [{ dst: node.id, method: "m", payload: 1 }], 200);
    await sleep(300);
    await store.sweep();
    const [r] = await p;
    expect(r).toMatchObject({ ok: false, error: { kind: "MESSAGE_EXPIRED" } });
    calls.stop();
    await store.close();
  });

  test("node-calls - the TTL counts from the push: a push the store holds past TTL and grace is still answered", async () => {
    const { store, node, run, answer } = await setup();
    // The store takes 600 ms to accept the push; TTL 300 ms + grace 200 ms would have run out before it did.
    const slow = new Proxy(store, {
      get: (t, k) => {
        const v = (t as unknown as Record<string | symbol, unknown>)[k];
        if (k === "pushInstructions")
          return async (...a: unknown[]) => {
            await sleep(600);
            return (v as (...x: unknown[]) => Promise<unknown>).apply(t, a);
          };
        return typeof v === "function" ? v.bind(t) : v;
      },
    });
    const calls = new NodeCalls({ store: slow, changed: () => {}, log: silentLogger, graceMs: 200 });
    const p = calls.call(run.id, [{ dst: node.id, method: "m", payload: 1 }], 300);
    await sleep(620);
    await answer("in time");
    expect(await p).toEqual([{ ok: true, value: "in time" }]);
    calls.stop();
    await store.close();
  });

  test("node-calls - stop fails the waiting calls at once", async () => {
    const { store, node, run } = await setup();
    const calls = new NodeCalls({ store, changed: () => {}, log: silentLogger });
    const p = calls.call(run.id, [{ dst: node.id, method: "m", payload: 1 }], 10_000);
    await sleep(20);
    calls.stop();
    expect(await p).toMatchObject([{ ok: false, error: { kind: "STREAM_CLOSED" } }]);
    await store.close();
  });
});
