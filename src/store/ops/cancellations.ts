import { invalid } from "../../protocol/errors.ts";
import type { Db, SqlConn } from "../dialect.ts";
import type { Cancellation } from "../store.ts";

/** How long the cancellation log keeps an entry: readers poll it within seconds; cleanup drops older ones. */
export const CANCELLATION_LOG_MS = 10 * 60 * 1000;
/** Most entries one read returns. (Default: 1000) */
const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 10_000;

/**
 * Appends "instruction `id` ended with `code` while node `nodeId` held it" to the log, in the caller's
 * transaction (the one that ends the instruction). On PostgreSQL the appenders are serialised until commit
 * (advisory lock): a sequence hands out seqs in call order but transactions commit in any order, and a reader
 * that saw seq 12 committed before seq 11 would skip 11 for good. With the lock, seqs commit in order. Only
 * transactions that end a held instruction with an error take it (rare); SQLite's write lock does it already.
 */
export const appendCancellation = async (
  db: Pick<Db, "d">,
  c: SqlConn,
  e: { instructionId: string; nodeId: string; code: string },
): Promise<void> => {
  if (db.d.lockKey) await c.q(db.d.lockKey, ["cancellation-log"]);
  await c.q("INSERT INTO cancellations (instruction_id, node_id, code, created_at) VALUES ($1, $2, $3, $4)", [
    e.instructionId,
    e.nodeId,
    e.code,
    c.now,
  ]);
};

export const cancellationsSince = async (
  db: Db,
  afterSeq: number | null,
  limit: number = DEFAULT_LIMIT,
): Promise<{ seq: number; items: Cancellation[] }> => {
  if (afterSeq !== null && (!Number.isSafeInteger(afterSeq) || afterSeq < 0))
    throw invalid("afterSeq", "must be an integer >= 0, or null");
  if (!Number.isSafeInteger(limit) || limit <= 0 || limit > MAX_LIMIT)
    throw invalid("limit", `must be an integer from 1 to ${MAX_LIMIT}`);
  return db.tx(async (c) => {
    if (afterSeq === null) {
      const [r] = await c.q("SELECT COALESCE(MAX(seq), 0) AS seq FROM cancellations");
      return { seq: Number(r?.seq ?? 0), items: [] };
    }
    const rows = await c.q(
      "SELECT seq, instruction_id, node_id, code FROM cancellations WHERE seq > $1 ORDER BY seq LIMIT $2",
      [afterSeq, limit],
    );
    const items = rows.map(
      (r): Cancellation => ({
        seq: Number(r.seq),
        instructionId: r.instruction_id as string,
        nodeId: r.node_id as string,
        code: r.code as string,
      }),
    );
    return { seq: items.at(-1)?.seq ?? afterSeq, items };
  }, "read");
};

/** Drops log entries older than CANCELLATION_LOG_MS (inside cleanup's transaction). */
export const trimCancellations = async (c: SqlConn): Promise<void> => {
  await c.q("DELETE FROM cancellations WHERE created_at <= $1", [c.now - CANCELLATION_LOG_MS]);
};
