import { FleetlinkError } from "../../protocol/errors.ts";
import { newId } from "../../protocol/ids.ts";
import type { Instruction, NodeStatus, Reply, Run, RunStatus } from "../../protocol/types.ts";
import type { Db, SqlConn } from "../dialect.ts";
import { emptyStats, type Row, toInstruction, toReply, toRun } from "../rows.ts";
import { END, silentOnline } from "../rules.ts";
import {
  checkId,
  checkIds,
  checkListLimit,
  checkRunStatus,
  checkTransition,
  type ListRunsOptions,
  type StoreStats,
  tenantFilter,
  tenantOrDefault,
  type WithdrawOptions,
} from "../store.ts";
import { insertOutcome } from "./replies.ts";

/** The run's row (with a row-lock suffix, if given); RUN_NOT_FOUND if none. */
export const runRow = async (c: SqlConn, id: string, lock = ""): Promise<Row> => {
  const [r] = await c.q(`SELECT * FROM runs WHERE id = $1 ${lock}`, [checkId("runId", id)]);
  if (!r) throw new FleetlinkError("RUN_NOT_FOUND", `no run ${id}`);
  return r;
};

export const createRun = async (db: Db, opts: { id?: string; tenant?: string } = {}): Promise<Run> => {
  const id = opts.id === undefined ? newId() : checkId("id", opts.id);
  const tenant = tenantOrDefault("tenant", opts.tenant);
  const rows = await db.tx((c) =>
    c.q(
      `INSERT INTO runs (id, tenant, status, reason, created_at, updated_at)
       VALUES ($1, $3, 'pending', NULL, $2, $2)
       ON CONFLICT (id) DO NOTHING RETURNING *`,
      [id, c.now, tenant],
    ),
  );
  if (!rows[0]) throw new FleetlinkError("INVALID_ARGUMENT", `run ${id} exists`, { field: "id" });
  return toRun(rows[0]);
};

export const getRun = async (db: Db, id: string): Promise<Run> =>
  db.tx(async (c) => toRun(await runRow(c, id)), "read");

export const transitionRun = async (
  db: Db,
  id: string,
  from: RunStatus,
  to: RunStatus,
  reason?: string,
): Promise<Run> => {
  checkTransition(from, to);
  return db.tx(async (c) => {
    // Compare-and-set in one statement: of two replicas racing, exactly one sees its row updated.
    const [r] = await c.q(
      "UPDATE runs SET status = $1, reason = $2, updated_at = $3 WHERE id = $4 AND status = $5 RETURNING *",
      [to, reason ?? null, c.now, checkId("runId", id), from],
    );
    if (r) return toRun(r);
    const cur = await runRow(c, id);
    throw new FleetlinkError("STATUS_CONFLICT", `run ${id} is ${cur.status}, not ${from}`, { field: "from" });
  });
};

export const listRuns = async (db: Db, opts: ListRunsOptions = {}): Promise<Run[]> => {
  const limit = checkListLimit(opts.limit);
  const status = opts.status === undefined ? null : checkRunStatus("status", opts.status);
  const tenant = tenantFilter(opts.tenant);
  const rows = await db.tx(
    (c) =>
      c.q(
        `SELECT * FROM runs WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
           AND (CAST($3 AS TEXT) IS NULL OR tenant = $3)
         ORDER BY created_at DESC, id DESC LIMIT $2`,
        [status, limit, tenant],
      ),
    "read",
  );
  return rows.map(toRun);
};

export const listInstructions = async (
  db: Db,
  runId: string,
  opts: { limit?: number } = {},
): Promise<Instruction[]> => {
  checkId("runId", runId);
  const limit = checkListLimit(opts.limit);
  return db.tx(async (c) => {
    const rows = await c.q("SELECT * FROM instructions WHERE run_id = $1 ORDER BY seq DESC LIMIT $2", [
      runId,
      limit,
    ]);
    // An empty list must still tell a run without instructions from one that does not exist.
    if (rows.length === 0) await runRow(c, runId);
    return rows.map(toInstruction);
  }, "read");
};

/** The rows of `table` of one run whose `column` is among `ids`, in store order. */
const byIds = async (
  db: Db,
  table: "instructions" | "replies",
  column: "id" | "reply_to",
  runId: string,
  ids: readonly string[],
) => {
  if (ids.length === 0) return [];
  return db.tx(
    (c) =>
      c.q(`SELECT * FROM ${table} WHERE run_id = $1 AND ${column} IN ${db.d.list("$2")} ORDER BY seq`, [
        runId,
        db.d.listParam(ids),
      ]),
    "read",
  );
};

export const getInstructions = async (
  db: Db,
  runId: string,
  ids: readonly string[],
): Promise<Instruction[]> => {
  checkId("runId", runId);
  checkIds("ids", ids);
  return (await byIds(db, "instructions", "id", runId, ids)).map(toInstruction);
};

export const getReplies = async (
  db: Db,
  runId: string,
  instructionIds: readonly string[],
): Promise<Reply[]> => {
  checkId("runId", runId);
  checkIds("instructionIds", instructionIds);
  return (await byIds(db, "replies", "reply_to", runId, instructionIds)).map(toReply);
};

export const withdrawInstructions = async (
  db: Db,
  runId: string,
  ids: readonly string[],
  opts: WithdrawOptions = {},
): Promise<string[]> => {
  checkId("runId", runId);
  checkIds("ids", ids);
  if (ids.length === 0) return [];
  const withdrawn = await db.tx(async (c) => {
    // Two statements: the rows are locked first (in id order, as a set-wise reply store locks them), so the
    // state read is the one the row has when it ends; the `ended = 0` guard is re-checked on the locked rows
    // (PostgreSQL) or under the write lock (SQLite). A reply racing this withdrawal either ended the instruction
    // first (not withdrawn) or waits and then finds it ended (INSTRUCTION_ENDED / CANCELLED): never two replies.
    const rows = await c.q(
      `SELECT seq, id, run_id, src, dst, group_id, method, state FROM instructions
       WHERE run_id = $1 AND ended = 0 AND id IN ${db.d.list("$2")}
       ORDER BY id ${db.d.name === "postgres" ? "FOR UPDATE" : ""}`,
      [runId, db.d.listParam(ids)],
    );
    if (rows.length === 0) return [];
    await c.q(`UPDATE instructions SET ${END} WHERE id IN ${db.d.list("$1")}`, [
      db.d.listParam(rows.map((r) => r.id as string)),
    ]);
    for (const i of rows) await insertOutcome(db, c, i, "FLEETLINK_E_CANCELLED", opts.deliver ? 0 : 1);
    return rows.map((r) => r.id as string);
  });
  // A withdrawn delivered instruction is in the cancellation log: the replica holding its node's stream reads
  // the log when told something changed (PostgreSQL: NOTIFY), so it tells the node at once.
  if (withdrawn.length > 0) db.changed();
  return withdrawn;
};

/**
 * Counts, in one statement (one snapshot). A node counts as online only while its window is open at the store's
 * time: a node whose window ran out is offline whether or not a sweep has said so yet, and a store no hub runs
 * on (`fleetlink store stats` on a stopped fleet) is never swept at all.
 */
export const stats = async (db: Db): Promise<StoreStats> => {
  const rows = await db.auto((q, nowParam) =>
    q(
      `SELECT 'runs' AS t, status AS k, count(*) AS n FROM runs GROUP BY status
       UNION ALL
       SELECT 'nodes', CASE WHEN ${silentOnline(db.d.now("$1"))} THEN 'offline' ELSE status END AS k, count(*)
         FROM nodes GROUP BY 2
       UNION ALL
       SELECT 'instructions', state, count(*) FROM instructions GROUP BY state
       UNION ALL
       SELECT 'replies', CASE WHEN claimed <> 0 THEN 'claimed' ELSE 'pending' END, count(*) FROM replies GROUP BY 2`,
      [nowParam],
    ),
  );
  const s: StoreStats = emptyStats();
  for (const r of rows) {
    const n = Number(r.n);
    const k = r.k as string;
    if (r.t === "runs") s.runs[k as RunStatus] = n;
    else if (r.t === "nodes") s.nodes[k as NodeStatus] = (s.nodes[k as NodeStatus] ?? 0) + n;
    else if (r.t === "instructions") s.instructions[k as Instruction["state"]] = n;
    else s.replies[k as "claimed" | "pending"] = n;
  }
  return s;
};
