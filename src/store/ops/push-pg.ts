import { FleetlinkError } from "../../protocol/errors.ts";
import type { Instruction } from "../../protocol/types.ts";
import type { Db } from "../dialect.ts";
import type { Row } from "../rows.ts";
import { STARTABLE, sameTenant } from "../rules.ts";
import type { PushCall, PushResult } from "../store.ts";
import { newInstructionRecord } from "./instruction-record.ts";
import { DEADLOCK, sqlState, UNIQUE_VIOLATION } from "./sql-state.ts";

/**
 * PostgreSQL: every call of a group-commit batch in one autocommit statement (one round trip instead of five).
 * Runs are share-locked and nodes key-share-locked in id order, as the transaction path does (see pushIn): a
 * FOR SHARE / FOR KEY SHARE read in READ COMMITTED waits for a concurrent writer of the row and then re-reads its
 * newest committed version (or finds it deleted). So a finishRun that committed first is seen (RUN_FINISHED),
 * one that comes later waits for this statement's commit and then finds its instructions; a cleanup deleting a
 * node either committed first (NODE_NOT_FOUND) or skips the locked node (SKIP LOCKED) and re-checks it later.
 * The materialized CTEs are read once, so the rows the guard judged are the rows the errors are built from.
 *
 * A call is inserted only if its run exists and is not finished and every node it names exists, is not
 * unregistered and is of the run's tenant; the other calls go in regardless (per-call atomicity). A call to a
 * pending run is not inserted either: its result is null, and the caller pushes it by the transaction path,
 * which starts the run (see push.ts). Starting it here would update a row this statement share-locked: two
 * statements doing so at once deadlock (measured: 20 first pushes from two replicas ran into the 5 s statement
 * timeout), so the first push of a run costs one more round trip instead. An item is
 * leased at once when its `leaseTo` is its node's current session, read under the lock a claim would take. A
 * taken id (or a deadlock on one) aborts the whole statement: null, and the caller takes the transaction path.
 */
export const pushStatement = async (
  db: Db,
  calls: readonly PushCall[],
): Promise<(PushResult | null)[] | null> => {
  const cols = {
    k: [] as number[],
    id: [] as string[],
    run: [] as string[],
    src: [] as string[],
    dst: [] as string[],
    group: [] as (string | null)[],
    method: [] as string[],
    payload: [] as Buffer[],
    ttl: [] as number[],
    max: [] as number[],
    hold: [] as number[],
    leaseTo: [] as (string | null)[],
    trace: [] as (string | null)[],
  };
  // Records with placeholder times; the statement's own values replace them below.
  const records = calls.map((call, k) =>
    call.items.map((it) => {
      const rec = newInstructionRecord(it, call.runId, 0, false, db.options);
      cols.k.push(k);
      cols.id.push(rec.id);
      cols.run.push(call.runId);
      cols.src.push(rec.src);
      cols.dst.push(rec.dst);
      cols.group.push(rec.groupId);
      cols.method.push(rec.method);
      cols.payload.push(Buffer.from(rec.payload.buffer, rec.payload.byteOffset, rec.payload.byteLength));
      cols.ttl.push(rec.ttlMs);
      cols.max.push(rec.maxAttempts);
      cols.hold.push(rec.holdWhileOffline ? 1 : 0);
      cols.leaseTo.push(it.leaseTo ?? null);
      cols.trace.push(rec.traceparent ?? null);
      return rec;
    }),
  );
  let rows: Row[];
  try {
    rows = await db.auto((q, nowParam) =>
      q(
        `WITH t AS MATERIALIZED (
           SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
             $8::bytea[], $9::bigint[], $10::int[], $11::smallint[], $12::text[], $15::text[]) WITH ORDINALITY
             AS t(k, id, run_id, src, dst, group_id, method, payload, ttl_ms, max_attempts, hold_offline, lease_to,
               traceparent, ord)),
         clock AS MATERIALIZED (SELECT ${db.d.now("$13")} AS now),
         r AS MATERIALIZED (
           SELECT id, status, tenant FROM runs WHERE id IN (SELECT run_id FROM t) ORDER BY id FOR SHARE),
         n AS MATERIALIZED (
           SELECT id, status, session_id, tenant FROM nodes WHERE id IN (SELECT dst FROM t) ORDER BY id
           FOR KEY SHARE),
         -- A node of another tenant than its call's run does not join: to that run it does not exist.
         bad AS MATERIALIZED (
           SELECT DISTINCT t.k FROM t LEFT JOIN r ON r.id = t.run_id
             LEFT JOIN n ON n.id = t.dst AND ${sameTenant("r.tenant", "n")}
           WHERE r.id IS NULL OR r.status = 'finished' OR n.id IS NULL OR n.status = 'unregistered'
             -- A pending run's first push is left to the transaction path, which starts the run.
             OR r.${STARTABLE}),
         ins AS (
           INSERT INTO instructions (id, run_id, src, dst, group_id, method, payload, created_at, ttl_ms,
             expires_at, state, attempts, max_attempts, lease_until, lease_owner, hold_offline, traceparent,
             delivered_at)
           SELECT t.id, t.run_id, t.src, t.dst, t.group_id, t.method, t.payload, clock.now, t.ttl_ms,
             clock.now + t.ttl_ms, CASE WHEN l.leased THEN 'leased' ELSE 'pending' END,
             CASE WHEN l.leased THEN 1 ELSE 0 END, t.max_attempts,
             CASE WHEN l.leased THEN clock.now + $14::bigint END, CASE WHEN l.leased THEN t.lease_to END,
             t.hold_offline, t.traceparent, CASE WHEN l.leased THEN clock.now END
           FROM t JOIN n ON n.id = t.dst CROSS JOIN clock
             CROSS JOIN LATERAL (SELECT t.lease_to IS NOT NULL AND t.lease_to = n.session_id AS leased) l
           WHERE t.k NOT IN (SELECT k FROM bad)
           -- seq in push order: claims deliver by seq.
           ORDER BY t.ord
           RETURNING id, created_at, expires_at, state, attempts, lease_until, lease_owner)
         SELECT 'i' AS kind, id, state AS status, created_at, expires_at, attempts, lease_until, lease_owner,
           NULL AS tenant
           FROM ins
         UNION ALL SELECT 'r', id, status, NULL, NULL, NULL, NULL, NULL, tenant FROM r
         UNION ALL SELECT 'n', id, status, NULL, NULL, NULL, NULL, NULL, tenant FROM n`,
        [
          cols.k,
          cols.id,
          cols.run,
          cols.src,
          cols.dst,
          cols.group,
          cols.method,
          cols.payload,
          cols.ttl,
          cols.max,
          cols.hold,
          cols.leaseTo,
          nowParam,
          Math.trunc(db.options.leaseMs),
          cols.trace,
        ],
        "fleetlink_push",
      ),
    );
  } catch (e) {
    if (sqlState(e) === UNIQUE_VIOLATION || sqlState(e) === DEADLOCK) return null;
    throw e;
  }
  const runs = new Map<string, Found>();
  const nodes = new Map<string, Found>();
  const inserted = new Map<string, Row>();
  for (const row of rows) {
    const found = { status: row.status as string, tenant: row.tenant as string };
    if (row.kind === "r") runs.set(row.id as string, found);
    else if (row.kind === "n") nodes.set(row.id as string, found);
    else inserted.set(row.id as string, row);
  }
  return calls.map((call, k): PushResult | null => {
    if (runs.get(call.runId)?.status === "pending") return null;
    const error = refusal(call, runs, nodes);
    if (error) return { ok: false, error };
    return { ok: true, instructions: records[k]!.map((rec) => stored(rec, inserted.get(rec.id)!)) };
  });
};

/** A run or node row the statement read: its status and tenant. */
interface Found {
  status: string;
  tenant: string;
}

/**
 * Why a call was not inserted, in the order the transaction path checks (run first, then items in order). It
 * explains what the statement's `bad` decided: a node of another tenant than the run's is not found, as there.
 */
const refusal = (
  call: PushCall,
  runs: ReadonlyMap<string, Found>,
  nodes: ReadonlyMap<string, Found>,
): FleetlinkError | null => {
  const run = runs.get(call.runId);
  if (!run) return new FleetlinkError("RUN_NOT_FOUND", `no run ${call.runId}`);
  if (run.status === "finished") return new FleetlinkError("RUN_FINISHED", `run ${call.runId} is finished`);
  for (const [i, it] of call.items.entries()) {
    const node = nodes.get(it.dst);
    const status = node?.tenant === run.tenant ? node.status : undefined;
    const field = `items[${i}].dst`;
    if (!status) return new FleetlinkError("NODE_NOT_FOUND", `no node ${it.dst}`, { field });
    if (status === "unregistered")
      return new FleetlinkError("NODE_UNREGISTERED", `node ${it.dst} is unregistered`, { field });
  }
  return null;
};

/** The record with what the statement decided: the database's time and whether the item went in leased. */
const stored = (rec: Instruction, row: Row): Instruction => ({
  ...rec,
  createdAt: Number(row.created_at),
  expiresAt: Number(row.expires_at),
  state: row.status === "leased" ? "leased" : "pending",
  attempts: Number(row.attempts),
  leaseUntil: row.lease_until === null ? null : Number(row.lease_until),
  leaseOwner: (row.lease_owner as string | null) ?? null,
});
