import { mayHoldRefs } from "../../protocol/blobs.ts";
import { FleetlinkError } from "../../protocol/errors.ts";
import type { Instruction } from "../../protocol/types.ts";
import type { Db, SqlConn } from "../dialect.ts";
import type { Row } from "../rows.ts";
import { STARTABLE, sameTenant, startRun } from "../rules.ts";
import {
  type Change,
  checkId,
  checkInstructions,
  type NewInstruction,
  type PushCall,
  type PushResult,
} from "../store.ts";
import { refPush } from "./blob-refs.ts";
import { checkTraces, newInstructionRecord } from "./instruction-record.ts";
import { pushStatement } from "./push-pg.ts";
import { runRow } from "./runs.ts";

export const pushInstructions = async (
  db: Db,
  runId: string,
  items: readonly NewInstruction[],
): Promise<Instruction[]> => {
  checkInstructions(items, db.options);
  checkTraces(items);
  checkId("runId", runId);
  if (oneStatement(db, items)) {
    const [res] = (await pushStatement(db, [{ runId, items }])) ?? [];
    if (res?.ok) {
      db.changed(forOthers(res.instructions));
      return res.instructions;
    }
    if (res) throw res.error;
    // No result (a pending run, or the statement gave way): the transaction path.
  }
  return pushTx(db, runId, items);
};

/**
 * PostgreSQL pushes in one statement (see pushStatement), unless an item may reference blobs: their refs are
 * checked and recorded by the transaction path (rare; a statement for them would not be simpler to trust). The
 * first push of a run goes by the transaction path too, after the statement found the run pending.
 */
const oneStatement = (db: Db, items: readonly NewInstruction[]): boolean =>
  db.d.name === "postgres" && items.every((it) => !it.payload || !mayHoldRefs(it.payload));

const pushTx = async (db: Db, runId: string, items: readonly NewInstruction[]): Promise<Instruction[]> => {
  const pushed = await db.tx((c) => pushIn(db, c, runId, items));
  db.changed(forOthers(pushed));
  return pushed;
};

/**
 * What another replica may have to do about a push: claim its instructions not already leased to a stream here,
 * for their nodes (false: nothing).
 */
const forOthers = (...pushes: (readonly Instruction[])[]): false | Change => {
  const nodes = new Set<string>();
  for (const pushed of pushes) for (const i of pushed) if (i.state !== "leased") nodes.add(i.dst);
  return nodes.size > 0 && { nodes: [...nodes] };
};

/**
 * Group commit: every push of the batch in one transaction (SQLite) or one statement (PostgreSQL, where each
 * call is refused or stored on its own inside the statement). A push that fails the transaction (a finished
 * run, an unknown node, a taken id: rare), or a taken id in the statement, undoes it all, and then each push
 * is made in its own transaction, so it fails alone: never partly stored, never two answers for one push. A
 * failed statement (the store, not a push) is every call's error: none is pushed twice.
 */
export const pushBatch = async (db: Db, calls: readonly PushCall[]): Promise<PushResult[]> => {
  const checked: (PushResult | null)[] = calls.map((call) => {
    try {
      checkInstructions(call.items, db.options);
      checkTraces(call.items);
      checkId("runId", call.runId);
      return null;
    } catch (error) {
      return { ok: false, error };
    }
  });
  let todo = calls.flatMap((call, i) => (checked[i] === null ? [{ call, i }] : []));
  if (db.d.name === "postgres") {
    const fast = todo.filter(({ call }) => oneStatement(db, call.items));
    // A null result: the call's run is pending, pushed below by the transaction path (see pushStatement).
    let res: (PushResult | null)[] | null = null;
    try {
      res =
        fast.length > 0
          ? await pushStatement(
              db,
              fast.map(({ call }) => call),
            )
          : null;
    } catch (error) {
      // The store failed (STORE_UNAVAILABLE is indefinite: the statement may have committed). Pushing again
      // would store a second copy under new ids, so every call of the statement gets the error.
      res = fast.map(() => ({ ok: false, error }));
    }
    if (res) {
      fast.forEach(({ i }, k) => {
        checked[i] = res[k] ?? null;
      });
      if (res.some((r) => r?.ok))
        db.changed(forOthers(...res.flatMap((r) => (r?.ok ? [r.instructions] : []))));
      todo = todo.filter(({ i }) => checked[i] === null);
    }
  } else if (todo.length > 1) {
    try {
      const all = await db.tx(async (c) => {
        const out: Instruction[][] = [];
        for (const { call } of todo) out.push(await pushIn(db, c, call.runId, call.items));
        return out;
      });
      db.changed(forOthers(...all));
      todo.forEach(({ i }, k) => {
        checked[i] = { ok: true, instructions: all[k]! };
      });
      return checked as PushResult[];
    } catch {
      // One of them failed (or the store did): each on its own below says which, and why.
    }
  }
  for (const { call, i } of todo) {
    try {
      checked[i] = { ok: true, instructions: await pushTx(db, call.runId, call.items) };
    } catch (error) {
      checked[i] = { ok: false, error };
    }
  }
  return checked as PushResult[];
};

/** One push inside the caller's transaction. */
const pushIn = async (
  db: Db,
  c: SqlConn,
  runId: string,
  items: readonly NewInstruction[],
): Promise<Instruction[]> => {
  const { d } = db;
  const run = await startedRun(db, c, runId);
  if (run.status === "finished") throw new FleetlinkError("RUN_FINISHED", `run ${runId} is finished`);
  const dsts = [...new Set(items.map((i) => i.dst))];
  // Key-share-locks the nodes on PostgreSQL (heartbeats still go through): a cleanup deleting one of them
  // locks it first, so it either committed before this read (NODE_NOT_FOUND) or skips the node until this
  // push has committed and then finds its instruction live. No instruction points at a deleted node.
  // Only nodes of the run's tenant are read: one of another tenant is, to this run, a node that does not exist.
  const rows =
    dsts.length === 1
      ? await c.q(
          `SELECT id, status, session_id FROM nodes WHERE id = $1 AND ${sameTenant("$2")} ${d.keyShareLock}`,
          [dsts[0], run.tenant],
        )
      : await c.q(
          `SELECT id, status, session_id FROM nodes WHERE id IN ${d.list("$1")} AND ${sameTenant("$2")}
           ORDER BY id ${d.keyShareLock}`,
          [d.listParam(dsts), run.tenant],
        );
  const known = new Map(rows.map((r) => [r.id as string, r.status as string]));
  const session = new Map(rows.map((r) => [r.id as string, r.session_id as string | null]));
  items.forEach((it, i) => {
    const status = known.get(it.dst);
    const field = `items[${i}].dst`;
    if (!status) throw new FleetlinkError("NODE_NOT_FOUND", `no node ${it.dst}`, { field });
    if (status === "unregistered")
      throw new FleetlinkError("NODE_UNREGISTERED", `node ${it.dst} is unregistered`, { field });
  });
  // Items for their node's current session (read above under the lock a claim would take) go in already leased
  // to it, one delivery counted, as a claim would.
  const records = items.map((it) =>
    newInstructionRecord(
      it,
      runId,
      c.now,
      it.leaseTo !== undefined && session.get(it.dst) === it.leaseTo,
      db.options,
    ),
  );
  await (d.name === "sqlite" ? insertEach(c, records) : insertChunks(c, records));
  await refPush(c, runId, records);
  return records;
};

const START = `UPDATE runs SET ${startRun("$2")} WHERE id = $1 AND ${STARTABLE} RETURNING *`;

/**
 * The push's run, started (pending → running) if it was pending; the transaction rolls the start back with a
 * push that fails. PostgreSQL share-locks the run so a concurrent finish waits for this push (or this push sees
 * it), but a share lock cannot be upgraded safely (two pushes holding it and both updating deadlock): there the
 * start goes first, taking the row lock before any other, and only a run that was not pending is then read
 * share-locked. SQLite writes one transaction at a time: it reads, and writes only a run still pending.
 */
const startedRun = async (db: Db, c: SqlConn, runId: string): Promise<Row> => {
  if (db.d.name === "postgres") {
    const [started] = await c.q(START, [checkId("runId", runId), c.now]);
    return started ?? runRow(c, runId, db.d.shareLock);
  }
  const run = await runRow(c, runId);
  if (run.status !== "pending") return run;
  const [started] = await c.q(START, [runId, c.now]);
  return started!;
};

const COLUMNS = `id, run_id, src, dst, group_id, method, payload, created_at, ttl_ms, expires_at,
  state, attempts, max_attempts, lease_until, lease_owner, hold_offline, traceparent, delivered_at`;

const values = (i: Instruction): unknown[] => [
  i.id,
  i.runId,
  i.src,
  i.dst,
  i.groupId,
  i.method,
  i.payload,
  i.createdAt,
  i.ttlMs,
  i.expiresAt,
  i.state,
  i.attempts,
  i.maxAttempts,
  i.leaseUntil,
  i.leaseOwner,
  i.holdWhileOffline ? 1 : 0,
  i.traceparent ?? null,
  // Inserted already leased to its node's stream: delivered as it is pushed.
  i.state === "leased" ? i.createdAt : null,
];

const COLUMN_COUNT = COLUMNS.split(",").length;

const taken = (i: Instruction, k: number) =>
  // A caller-chosen id that exists already aborts the whole push: the transaction rolls back.
  new FleetlinkError("INVALID_ARGUMENT", `instruction ${i.id} exists`, { field: `items[${k}].id` });

const INSERT_ONE = `INSERT INTO instructions (${COLUMNS})
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
  ON CONFLICT (id) DO NOTHING RETURNING seq`;

/**
 * SQLite: one cached single-row INSERT per instruction (no statement to parse per push, nothing read back but
 * the seq): bench:fanout measured a 500-row multi-row INSERT … RETURNING * at ≈ 90 µs a row here, this at ≈ 15.
 */
const insertEach = async (c: SqlConn, records: Instruction[]): Promise<void> => {
  for (const [k, i] of records.entries())
    if ((await c.q(INSERT_ONE, values(i))).length === 0) throw taken(i, k);
};

/**
 * PostgreSQL: multi-row INSERTs (500 rows, 9000 parameters each, under the 65535 limit): one round trip per
 * chunk instead of one per instruction.
 */
const insertChunks = async (c: SqlConn, records: Instruction[]): Promise<void> => {
  for (let off = 0; off < records.length; off += 500) {
    const chunk = records.slice(off, off + 500);
    const params: unknown[] = [];
    const tuples = chunk.map((i) => {
      const b = params.length;
      params.push(...values(i));
      return `(${Array.from({ length: COLUMN_COUNT }, (_, k) => `$${b + k + 1}`).join(", ")})`;
    });
    const rows = await c.q(
      `INSERT INTO instructions (${COLUMNS}) VALUES ${tuples.join(", ")} ON CONFLICT (id) DO NOTHING RETURNING id`,
      params,
    );
    if (rows.length < chunk.length) {
      const got = new Set(rows.map((r) => r.id as string));
      const k = chunk.findIndex((i) => !got.has(i.id));
      throw taken(chunk[k]!, off + k);
    }
  }
};
