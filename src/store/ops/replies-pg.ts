import { newId } from "../../protocol/ids.ts";
import type { Db } from "../dialect.ts";
import { type Row, toReply } from "../rows.ts";
import { answerable, END } from "../rules.ts";
import type { NewReply, StoreReplyResult } from "../store.ts";
import type { TracedReply } from "./instruction-record.ts";
import { DEADLOCK, sqlState, UNIQUE_VIOLATION } from "./sql-state.ts";

/**
 * PostgreSQL: ends the batch's answerable instructions and stores their replies in one autocommit statement (one
 * round trip, no transaction, no savepoint). The UPDATE's guard (answerable: ended = 0) row-locks each
 * instruction, so a racing store or sweep of the same instruction waits, re-checks the guard on the committed
 * row and finds it ended: one reply per instruction. Only the first use of an instruction or a reply id in the
 * batch is tried here; the rest are left to the caller, which stores or diagnoses them in order as before.
 *
 * Another replica may commit a reply with one of our reply ids after our guard checked it (READ COMMITTED does
 * not see uncommitted rows): the INSERT then fails with a unique violation, which undoes the whole statement
 * (the UPDATE too: no instruction ends without its reply). So does a deadlock. Then nothing is stored here and
 * the caller's transaction path sorts the batch out item by item.
 *
 * Named, so prepared once per connection: it returns named columns, never `*`, because a prepared statement
 * whose result columns change (a later migration adding one, on a replica still running) fails until replanned.
 *
 * Sets `checked[i]` for each item stored; returns how many.
 */
export const storeStatement = async (
  db: Db,
  items: readonly NewReply[],
  checked: (StoreReplyResult | null)[],
): Promise<number> => {
  const seen = new Set<string>();
  const batch: { r: TracedReply; i: number; id: string }[] = [];
  items.forEach((r, i) => {
    if (checked[i]) return;
    const id = r.id ?? newId();
    if (seen.has(`t:${r.replyTo}`) || seen.has(`r:${id}`)) return;
    seen.add(`t:${r.replyTo}`).add(`r:${id}`);
    batch.push({ r, i, id });
  });
  if (batch.length === 0) return 0;
  // In instruction id order, the order a withdraw (and the transaction path) locks them in: the UPDATE locks
  // rows in the order of t, and two orders would deadlock.
  batch.sort((a, b) => (a.r.replyTo < b.r.replyTo ? -1 : a.r.replyTo > b.r.replyTo ? 1 : 0));
  let rows: Row[];
  try {
    rows = await db.auto((q, nowParam) =>
      q(
        `WITH t AS MATERIALIZED (
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], $7::text[],
             $8::int[], $10::text[])
             AS t(reply_to, node_id, run_id, reply_id, payload, error_code, error_message, claimed, traceparent)),
         clock AS MATERIALIZED (SELECT ${db.d.now("$9")} AS now),
         ended AS (
           UPDATE instructions i SET ${END}
           FROM t CROSS JOIN clock
           WHERE i.id = t.reply_to AND i.dst = t.node_id AND i.run_id = t.run_id AND ${answerable("clock.now", "i")}
             AND NOT EXISTS (SELECT 1 FROM replies r WHERE r.id = t.reply_id)
           RETURNING i.id, i.src, i.group_id, i.method, clock.now)
         INSERT INTO replies (id, run_id, src, dst, reply_to, group_id, method, payload, created_at,
           error_code, error_message, claimed, traceparent)
         SELECT t.reply_id, t.run_id, t.node_id, e.src, t.reply_to, e.group_id, e.method, t.payload, e.now,
           t.error_code, t.error_message, t.claimed, t.traceparent
         FROM ended e JOIN t ON t.reply_to = e.id
         RETURNING id, run_id, src, dst, reply_to, group_id, method, payload, created_at, error_code, error_message,
           traceparent`,
        [
          batch.map((b) => b.r.replyTo),
          batch.map((b) => b.r.nodeId),
          batch.map((b) => b.r.runId),
          batch.map((b) => b.id),
          batch.map((b) => {
            const p = b.r.payload ?? new Uint8Array(0);
            return Buffer.from(p.buffer, p.byteOffset, p.byteLength);
          }),
          batch.map((b) => b.r.error?.code ?? null),
          batch.map((b) => b.r.error?.message ?? null),
          batch.map((b) => (b.r.claimed ? 1 : 0)),
          nowParam,
          batch.map((b) => b.r.traceparent ?? null),
        ],
        "fleetlink_store_replies",
      ),
    );
  } catch (e) {
    if (sqlState(e) === UNIQUE_VIOLATION || sqlState(e) === DEADLOCK) return 0;
    throw e;
  }
  const replies = new Map(rows.map((r) => [r.reply_to as string, toReply(r)]));
  for (const b of batch) {
    const reply = replies.get(b.r.replyTo);
    if (reply) checked[b.i] = { ok: true, reply, duplicate: false };
  }
  return replies.size;
};
