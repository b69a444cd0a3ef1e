// Reads behind the dashboard's call and node pages, its recent failures and its rate charts. Each one is bounded
// (instructions by run; a node's among the newest HISTORY_SCAN by sequence; replies by primary key), so a page polled every few seconds
// costs what it shows, not what the store holds.
import { invalid } from "../../protocol/errors.ts";
import type { Db } from "../dialect.ts";
import { bytes, num, numOrNull, type Row } from "../rows.ts";
import {
  type ActivityCounters,
  type CallInstructionsOptions,
  checkId,
  checkListLimit,
  checkName,
  type InstructionOutcome,
  LIST_LIMIT,
  type NodeInstructionsOptions,
  type RecentFailure,
  type RecentFailuresOptions,
  tenantFilter,
} from "../store.ts";
import { runRow } from "./runs.ts";

/**
 * How many of the store's newest instructions a node's history looks through. Bounded rather than indexed: an
 * index of instructions by destination cost SQLite pushes 21–39 % of their rate (`npm run bench:push-index`,
 * BENCHMARKS.md), a price every push would pay for a page an operator opens now and then.
 */
export const HISTORY_SCAN = 50_000;

/** Largest payload preview a read returns, in bytes. */
export const MAX_PREVIEW_BYTES = 65_536;
const OUTCOMES = ["ok", "error", "pending"] as const;

/**
 * Instructions joined to their replies, payloads cut in SQL (`substr` takes bytes of a BLOB in SQLite and of a
 * bytea in PostgreSQL), so a call of 4 MiB payloads reads a few KiB per node. `$1` is the preview length.
 */
const SELECT = `SELECT i.id, i.run_id, i.dst, i.group_id, i.method, i.state, i.attempts, i.max_attempts,
    i.created_at, i.expires_at, i.lease_until, i.delivered_at, substr(i.payload, 1, $1) AS payload,
    length(i.payload) AS payload_bytes, r.id AS r_id, r.created_at AS r_created_at, r.error_code,
    r.error_message, substr(r.payload, 1, $1) AS r_payload, length(r.payload) AS r_payload_bytes
  FROM instructions i LEFT JOIN replies r ON r.reply_to = i.id`;

const toOutcome = (r: Row): InstructionOutcome => ({
  id: r.id as string,
  runId: r.run_id as string,
  dst: r.dst as string,
  groupId: (r.group_id as string | null) ?? null,
  method: r.method as string,
  state: r.state as InstructionOutcome["state"],
  attempts: num(r.attempts),
  maxAttempts: num(r.max_attempts),
  createdAt: num(r.created_at),
  expiresAt: num(r.expires_at),
  leaseUntil: numOrNull(r.lease_until),
  deliveredAt: numOrNull(r.delivered_at),
  payload: bytes(r.payload),
  payloadBytes: num(r.payload_bytes),
  reply:
    r.r_id === null || r.r_id === undefined
      ? null
      : {
          id: r.r_id as string,
          createdAt: num(r.r_created_at),
          error:
            r.error_code === null || r.error_code === undefined
              ? null
              : { code: r.error_code as string, message: (r.error_message as string | null) ?? "" },
          payload: bytes(r.r_payload),
          payloadBytes: num(r.r_payload_bytes),
        },
});

/** The outcome filter as SQL over the joined reply `r`. */
const outcomeWhere = {
  ok: "r.id IS NOT NULL AND r.error_code IS NULL",
  error: "r.error_code IS NOT NULL",
  pending: "r.id IS NULL",
} as const;

/**
 * One call's instructions (those sharing `groupId`, or the one instruction with that id if it has none), in
 * push order, with their replies. Empty if there is no such call (RUN_NOT_FOUND if no such run).
 */
export const callInstructions = async (
  db: Db,
  runId: string,
  groupId: string,
  opts: CallInstructionsOptions = {},
): Promise<InstructionOutcome[]> => {
  checkId("runId", runId);
  checkId("groupId", groupId);
  const limit = opts.limit === undefined ? LIST_LIMIT.max : checkListLimit(opts.limit);
  const preview = opts.previewBytes ?? 4096;
  if (!Number.isInteger(preview) || preview < 0 || preview > MAX_PREVIEW_BYTES)
    throw invalid("previewBytes", `must be an integer from 0 to ${MAX_PREVIEW_BYTES}`);
  return db.tx(async (c) => {
    // The run index finds the run's rows; a call is at most one instruction per node of the run.
    const rows = await c.q(
      `${SELECT} WHERE i.run_id = $2 AND (i.group_id = $3 OR (i.group_id IS NULL AND i.id = $3))
       ORDER BY i.seq LIMIT $4`,
      [preview, runId, groupId, limit],
    );
    if (rows.length === 0) await runRow(c, runId);
    return rows.map(toOutcome);
  }, "read");
};

/**
 * A node's newest instructions across runs, newest first, optionally of one method, run or outcome; no payload
 * bytes (sizes only). Only the store's newest HISTORY_SCAN instructions are looked at (a range of the primary
 * key, walked from the newest), so a filter that matches little costs at most that scan.
 */
export const nodeInstructions = async (
  db: Db,
  nodeId: string,
  opts: NodeInstructionsOptions = {},
): Promise<InstructionOutcome[]> => {
  checkId("nodeId", nodeId);
  const limit = checkListLimit(opts.limit);
  const method = opts.method === undefined ? null : checkName("method", opts.method);
  const runId = opts.runId === undefined ? null : checkId("runId", opts.runId);
  if (opts.outcome !== undefined && !OUTCOMES.includes(opts.outcome))
    throw invalid("outcome", `must be one of ${OUTCOMES.join(", ")}`);
  const outcome = opts.outcome === undefined ? "" : `AND ${outcomeWhere[opts.outcome]}`;
  const rows = await db.tx(
    (c) =>
      c.q(
        `${SELECT} WHERE i.seq > (SELECT coalesce(max(seq), 0) - $6 FROM instructions)
           AND i.dst = $2 AND (CAST($3 AS TEXT) IS NULL OR i.method = $3)
           AND (CAST($4 AS TEXT) IS NULL OR i.run_id = $4) ${outcome}
         ORDER BY i.seq DESC LIMIT $5`,
        [0, nodeId, method, runId, limit, HISTORY_SCAN],
      ),
    "read",
  );
  return rows.map(toOutcome);
};

/**
 * The newest sequence numbers and the error replies after `afterReplySeq` (null: none counted). Sequence numbers
 * only grow, so the difference of two readings is what was pushed and replied in between, store-wide.
 */
export const activityCounters = async (db: Db, afterReplySeq: number | null): Promise<ActivityCounters> =>
  db.tx(async (c) => {
    const [i] = await c.q("SELECT max(seq) AS n FROM instructions");
    const [r] = await c.q("SELECT max(seq) AS n FROM replies");
    const replies = num(r?.n ?? 0);
    let errors = 0;
    if (afterReplySeq !== null && replies > afterReplySeq) {
      // A range of the primary key: the replies of one sample interval.
      const [e] = await c.q(
        "SELECT count(*) AS n FROM replies WHERE seq > $1 AND seq <= $2 AND error_code IS NOT NULL",
        [afterReplySeq, replies],
      );
      errors = num(e?.n ?? 0);
    }
    return { instructions: num(i?.n ?? 0), replies, errors };
  }, "read");

/** Most failures `recentFailures` returns. */
export const MAX_RECENT_FAILURES = 100;

/**
 * The newest error replies, newest first, among the store's newest HISTORY_SCAN replies: a range of the replies'
 * primary key walked from the newest, so a store with few errors costs at most that scan, never the whole table.
 * A tenant's are those of its runs (the runs' primary key, per reply looked at).
 */
export const recentFailures = async (db: Db, opts: RecentFailuresOptions = {}): Promise<RecentFailure[]> => {
  const limit = opts.limit ?? 10;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_RECENT_FAILURES)
    throw invalid("limit", `must be an integer from 1 to ${MAX_RECENT_FAILURES}`);
  const tenant = tenantFilter(opts.tenant);
  const rows = await db.tx(
    (c) =>
      c.q(
        `SELECT r.seq, r.id, r.run_id, r.src, r.reply_to, r.group_id, r.method, r.created_at, r.error_code,
           r.error_message
         FROM replies r
         WHERE r.seq > (SELECT coalesce(max(seq), 0) - $1 FROM replies) AND r.error_code IS NOT NULL
           AND (CAST($2 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM runs WHERE runs.id = r.run_id AND runs.tenant = $2))
         ORDER BY r.seq DESC LIMIT $3`,
        [HISTORY_SCAN, tenant, limit],
      ),
    "read",
  );
  return rows.map((r) => ({
    seq: num(r.seq),
    replyId: r.id as string,
    runId: r.run_id as string,
    nodeId: r.src as string,
    instructionId: r.reply_to as string,
    callId: (r.group_id as string | null) ?? (r.reply_to as string),
    method: r.method as string,
    code: r.error_code as string,
    message: (r.error_message as string | null) ?? "",
    at: num(r.created_at),
  }));
};
