import pg from "pg";
import { afterAll, afterEach, beforeAll, expect, test } from "vitest";
import { isFleetlinkError } from "../../src/protocol/errors.ts";
import { newId } from "../../src/protocol/ids.ts";
import { PostgresStore } from "../../src/store/postgres.ts";
import { describePg, dropSchema, pgSchemaUrl } from "../helpers/postgres.ts";

const TTL = 600_000;

/** Statements sent to PostgreSQL while fn runs, the post-commit NOTIFY left out. */
const statements = async (fn: () => Promise<unknown>): Promise<string[]> => {
  const sent: string[] = [];
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const text = typeof args[0] === "string" ? args[0] : (args[0] as { text?: string }).text;
    if (text && !text.includes("pg_notify")) sent.push(text);
    return (query as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof query;
  try {
    await fn();
  } finally {
    pg.Client.prototype.query = query;
  }
  return sent;
};

const errorOf = (r: { ok: boolean; error?: unknown }) => {
  expect(r.ok).toBe(false);
  return r.error;
};

describePg("postgres push and reply in one statement", () => {
  let schema: string;
  let store: PostgresStore;
  /** A second replica on the same schema. */
  let other: PostgresStore;

  beforeAll(async () => {
    const made = pgSchemaUrl("onestmt");
    schema = made.schema;
    store = await PostgresStore.open(made.url, { poolSize: 4 });
    other = await PostgresStore.open(made.url, { poolSize: 4 });
  });
  afterEach(() => {
    expect(pg.Client.prototype.query.name).toBe("query");
  });
  afterAll(async () => {
    await store?.close();
    await other?.close();
    await dropSchema(schema);
  });

  const onlineNode = async () => {
    const n = await store.registerNode({ name: `n-${newId().slice(-8)}`, heartbeatIntervalMs: 60_000 });
    return store.heartbeat(n.id);
  };

  test("push - a push and a reply are one statement each, once the run's first push has started it", async () => {
    const run = await store.createRun();
    const node = await onlineNode();
    // The first push finds the run pending and takes the transaction path, which starts it.
    const firstSql = await statements(() =>
      store.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: TTL }]),
    );
    expect(firstSql.length).toBeGreaterThan(1);
    expect((await store.getRun(run.id)).status).toBe("running");
    let ins: Awaited<ReturnType<PostgresStore["pushInstructions"]>> = [];
    const pushSql = await statements(async () => {
      ins = await store.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: TTL }]);
    });
    expect(pushSql).toHaveLength(1);
    const replySql = await statements(async () => {
      const [res] = await store.storeReplies([{ runId: run.id, nodeId: node.id, replyTo: ins[0]!.id }]);
      expect(res!.ok).toBe(true);
    });
    expect(replySql).toHaveLength(1);
  });

  test("push batch - a call naming an unknown node stores nothing, the good call beside it is stored", async () => {
    const run = await store.createRun();
    const other = await store.createRun();
    const node = await onlineNode();
    const gone = await onlineNode();
    await store.unregisterNode(gone.id);
    const finished = await store.createRun();
    await store.transitionRun(finished.id, "pending", "finished");
    const results = await store.pushBatch([
      {
        runId: run.id,
        items: [
          { dst: node.id, method: "a", ttlMs: TTL },
          { dst: newId(), method: "a", ttlMs: TTL },
        ],
      },
      { runId: other.id, items: [{ dst: node.id, method: "b", ttlMs: TTL }] },
      { runId: run.id, items: [{ dst: gone.id, method: "c", ttlMs: TTL }] },
      { runId: finished.id, items: [{ dst: node.id, method: "d", ttlMs: TTL }] },
      { runId: newId(), items: [{ dst: node.id, method: "e", ttlMs: TTL }] },
    ]);
    const unknown = errorOf(results[0]!);
    expect(isFleetlinkError(unknown, "NODE_NOT_FOUND")).toBe(true);
    expect((unknown as { field?: string }).field).toBe("items[1].dst");
    expect(results[1]!.ok).toBe(true);
    const unregistered = errorOf(results[2]!);
    expect(isFleetlinkError(unregistered, "NODE_UNREGISTERED")).toBe(true);
    expect((unregistered as { field?: string }).field).toBe("items[0].dst");
    expect(isFleetlinkError(errorOf(results[3]!), "RUN_FINISHED")).toBe(true);
    expect(isFleetlinkError(errorOf(results[4]!), "RUN_NOT_FOUND")).toBe(true);
    expect(await store.listInstructions(run.id)).toEqual([]);
    expect(await store.listInstructions(finished.id)).toEqual([]);
    const stored = await store.listInstructions(other.id);
    expect(stored.map((i) => i.method)).toEqual(["b"]);
    expect(results[1]!.ok && results[1]!.instructions).toEqual(stored);
  });

  test("push batch - a taken caller-chosen id refuses its call naming the item, the others are stored", async () => {
    const run = await store.createRun();
    const node = await onlineNode();
    const [existing] = await store.pushInstructions(run.id, [{ dst: node.id, method: "old", ttlMs: TTL }]);
    const results = await store.pushBatch([
      { runId: run.id, items: [{ dst: node.id, method: "x", ttlMs: TTL }] },
      {
        runId: run.id,
        items: [
          { dst: node.id, method: "y", ttlMs: TTL },
          { id: existing!.id, dst: node.id, method: "y", ttlMs: TTL },
        ],
      },
      { runId: run.id, items: [{ dst: node.id, method: "z", ttlMs: TTL }] },
    ]);
    const taken = errorOf(results[1]!);
    expect(isFleetlinkError(taken, "INVALID_ARGUMENT")).toBe(true);
    expect((taken as { field?: string }).field).toBe("items[1].id");
    expect(results[0]!.ok && results[2]!.ok).toBe(true);
    const methods = (await store.listInstructions(run.id)).map((i) => i.method).sort();
    expect(methods).toEqual(["old", "x", "z"]);
  });

  test("push - items for the node's current session go in leased to it, in push order", async () => {
    const run = await store.createRun();
    const node = await onlineNode();
    await store.openSession({ nodeId: node.id, sessionId: "s1" });
    const ins = await store.pushInstructions(run.id, [
      { dst: node.id, method: "a", ttlMs: TTL, leaseTo: "s1" },
      { dst: node.id, method: "b", ttlMs: TTL, leaseTo: "s0" },
      { dst: node.id, method: "c", ttlMs: TTL },
    ]);
    expect(ins.map((i) => [i.state, i.attempts, i.leaseOwner])).toEqual([
      ["leased", 1, "s1"],
      ["pending", 0, null],
      ["pending", 0, null],
    ]);
    expect(ins[0]!.leaseUntil).toBe(ins[0]!.createdAt + store.options.leaseMs);
    expect(ins[0]!.expiresAt).toBe(ins[0]!.createdAt + TTL);
    // What was returned is what was stored; seq follows the order of the items.
    expect((await store.listInstructions(run.id)).reverse()).toEqual(ins);
  });

  test("reply batch - a taken reply id and a duplicate are refused or acknowledged, the fresh one is stored", async () => {
    const run = await store.createRun();
    const node = await onlineNode();
    const ins = await store.pushInstructions(
      run.id,
      ["a", "b", "c", "d"].map((method) => ({ dst: node.id, method, ttlMs: TTL })),
    );
    const reply = (k: number, id?: string) => ({ runId: run.id, nodeId: node.id, replyTo: ins[k]!.id, id });
    const [r0, r2] = [newId(), newId()];
    const [first] = await store.storeReplies([reply(0, r0)]);
    expect(first!.ok).toBe(true);
    const results = await store.storeReplies([reply(1, r0), reply(2, r2), reply(0, r0), reply(3, r2)]);
    expect(isFleetlinkError(errorOf(results[0]!), "INVALID_ARGUMENT")).toBe(true);
    expect(results[1]!.ok && results[1]!.reply.id).toBe(r2);
    expect(results[2]!.ok && results[2]!.duplicate).toBe(true);
    // A second use of an id inside the batch: the first use wins.
    expect(isFleetlinkError(errorOf(results[3]!), "INVALID_ARGUMENT")).toBe(true);
    const stored = await store.getReplies(
      run.id,
      ins.map((i) => i.id),
    );
    expect(stored.map((r) => [r.replyTo, r.id])).toEqual([
      [ins[0]!.id, r0],
      [ins[2]!.id, r2],
    ]);
    const [left] = await store.getInstructions(run.id, [ins[1]!.id]);
    expect(left!.state).toBe("pending");
  });

  test("push race - two replicas push one caller-chosen id at once: one call gets it, the calls beside it go in", async () => {
    const run = await store.createRun();
    const node = await onlineNode();
    for (let round = 0; round < 10; round++) {
      const id = newId();
      const batch = (method: string) => [
        { runId: run.id, items: [{ id, dst: node.id, method, ttlMs: TTL }] },
        { runId: run.id, items: [{ dst: node.id, method: `${method}-beside`, ttlMs: TTL }] },
      ];
      const [a, b] = await Promise.all([store.pushBatch(batch("a")), other.pushBatch(batch("b"))]);
      const winners = [a![0]!, b![0]!].filter((r) => r.ok);
      expect(winners).toHaveLength(1);
      const loser = [a![0]!, b![0]!].find((r) => !r.ok)!;
      expect((loser as { error: { field?: string } }).error.field).toBe("items[0].id");
      expect(a![1]!.ok && b![1]!.ok).toBe(true);
      const [stored] = await store.getInstructions(run.id, [id]);
      expect(stored!.method).toBe(winners[0]!.ok && winners[0]!.instructions[0]!.method);
    }
  });

  test("push race - replicas pushing a pending run's first work at once: every push stored, the run started once", async () => {
    const run = await store.createRun();
    const node = await onlineNode();
    const pushes = Array.from({ length: 20 }, (_, k) =>
      (k % 2 ? store : other).pushBatch([
        { runId: run.id, items: [{ dst: node.id, method: "a", ttlMs: TTL }] },
      ]),
    );
    const results = (await Promise.all(pushes)).map(([r]) => r!);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect((await store.listInstructions(run.id, { limit: 1000 })).length).toBe(20);
    expect((await store.getRun(run.id)).status).toBe("running");
  });

  test("push race - pushes racing a finish on another replica are stored whole or refused RUN_FINISHED", async () => {
    const run = await store.createRun();
    const node = await onlineNode();
    const pushes = Array.from({ length: 40 }, (_, k) =>
      (k % 2 ? store : other).pushBatch([
        {
          runId: run.id,
          items: [
            { dst: node.id, method: "a", ttlMs: TTL },
            { dst: node.id, method: "b", ttlMs: TTL },
          ],
        },
      ]),
    );
    // The first push to commit starts the run; a run is never pending again once running.
    const finish = new Promise((r) => setTimeout(r, 5)).then(() =>
      store
        .transitionRun(run.id, "pending", "finished")
        .catch(() => store.transitionRun(run.id, "running", "finished")),
    );
    const results = (await Promise.all(pushes)).map(([r]) => r!);
    await finish;
    let stored = 0;
    for (const r of results)
      if (r.ok) stored += r.instructions.length;
      else expect(isFleetlinkError(r.error, "RUN_FINISHED")).toBe(true);
    expect((await store.listInstructions(run.id, { limit: 1000 })).length).toBe(stored);
    // Once the finish has committed, a push is refused.
    const [late] = await other.pushBatch([
      { runId: run.id, items: [{ dst: node.id, method: "c", ttlMs: TTL }] },
    ]);
    expect(isFleetlinkError(errorOf(late!), "RUN_FINISHED")).toBe(true);
  });

  test("notify - a push leased to a stream here and a reply claimed here wake no other replica; others do", async () => {
    const run = await store.createRun();
    const node = await onlineNode();
    await store.openSession({ nodeId: node.id, sessionId: "here" });
    let heard = 0;
    const said: unknown[] = [];
    const stop = other.watch((source, change) => {
      if (source !== "remote") return;
      heard++;
      said.push(change);
    });
    try {
      // The watch reports once when its LISTEN connection is up: wait for that, then count from zero.
      const t0 = Date.now();
      while (heard === 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
      heard = 0;
      said.length = 0;
      const settle = () => new Promise((r) => setTimeout(r, 300));
      const [leased] = await store.pushInstructions(run.id, [
        { dst: node.id, method: "m", ttlMs: TTL, leaseTo: "here" },
      ]);
      expect(leased!.state).toBe("leased");
      const [stored] = await store.storeReplies([
        { runId: run.id, nodeId: node.id, replyTo: leased!.id, claimed: true },
      ]);
      expect(stored!.ok).toBe(true);
      await settle();
      expect(heard).toBe(0);
      // A pending instruction (another replica may hold the node's stream) is announced; so is an unclaimed reply.
      const [pending] = await store.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: TTL }]);
      await settle();
      expect(heard).toBeGreaterThanOrEqual(1);
      // ... and says what it concerns: the node to claim for, the run whose reply waits.
      expect(said).toContainEqual({ nodes: [node.id], runs: [] });
      heard = 0;
      await store.storeReplies([{ runId: run.id, nodeId: node.id, replyTo: pending!.id }]);
      await settle();
      expect(heard).toBeGreaterThanOrEqual(1);
      expect(said).toContainEqual({ nodes: [], runs: [run.id] });
      // A change that does not say (a withdraw) is announced as anything.
      const [later] = await store.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: TTL }]);
      await settle();
      said.length = 0;
      await store.withdrawInstructions(run.id, [later!.id]);
      await settle();
      expect(said).toContainEqual(undefined);
    } finally {
      stop();
    }
  });
});
