import { mayHoldRefs } from "../../protocol/blobs.ts";
import { FleetlinkError } from "../../protocol/errors.ts";
import { newId } from "../../protocol/ids.ts";
import type { Reply } from "../../protocol/types.ts";
import type { Db, SqlConn } from "../dialect.ts";
import { type Row, toReply } from "../rows.ts";
import { answerable, END } from "../rules.ts";
import {
  CANCELLED_DELIVERED,
  type Change,
  checkReply,
  diagnoseReply,
  type NewReply,
  OUTCOME_TEXT,
  type OutcomeCode,
  type StoreReplyResult,
} from "../store.ts";
import { addReplyRefs, checkReplyRefs } from "./blob-refs.ts";
import { appendCancellation } from "./cancellations.ts";
import { checkTraces, type TracedReply } from "./instruction-record.ts";
import { storeStatement } from "./replies-pg.ts";
import { DEADLOCK, sqlState, UNIQUE_VIOLATION } from "./sql-state.ts";

const INSERT_REPLY = `INSERT INTO replies (id, run_id, src, dst, reply_to, group_id, method, payload, created_at,
    error_code, error_message, claimed)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`;
/** A node's reply, with the trace context it sent back. */
const INSERT_NODE_REPLY = `INSERT INTO replies (id, run_id, src, dst, reply_to, group_id, method, payload, created_at,
    error_code, error_message, claimed, traceparent)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`;

/**
 * The error reply that ends instruction `i` (a row, read with its `state` before it was ended) without a reply
 * from its node. If a node held it (state leased, whether or not the lease was still current), the node may be
 * running it: the end is also appended to the cancellation log, in the same transaction, so the replica holding
 * the node's stream tells it to stop.
 */
export const insertOutcome = async (
  db: Pick<Db, "d">,
  c: SqlConn,
  i: Row,
  code: OutcomeCode,
  claimed: 0 | 1,
): Promise<void> => {
  if (i.state === "leased")
    await appendCancellation(db, c, { instructionId: i.id as string, nodeId: i.dst as string, code });
  await c.q(`${INSERT_REPLY} ON CONFLICT (reply_to) DO NOTHING`, [
    newId(),
    i.run_id,
    i.dst,
    i.src,
    i.id,
    i.group_id ?? null,
    i.method,
    new Uint8Array(0),
    c.now,
    code,
    i.state === "leased" && code === "FLEETLINK_E_CANCELLED" ? CANCELLED_DELIVERED : OUTCOME_TEXT[code],
    claimed,
  ]);
};

export const storeReplies = async (db: Db, items: readonly NewReply[]): Promise<StoreReplyResult[]> => {
  const checked = items.map((r, i): StoreReplyResult | null => {
    try {
      checkReply(r, `items[${i}]`, db.options);
      checkTraces([r]);
      return null;
    } catch (error) {
      return { ok: false, error: error as FleetlinkError };
    }
  });
  if (checked.every((c) => c !== null)) return checked as StoreReplyResult[];
  if (db.d.name === "postgres" && items.every((r, i) => checked[i] || !mayHoldReplyRefs(r))) {
    const stored = await storeStatement(db, items, checked);
    if (stored > 0) db.changed(forOthers(items, checked));
    if (checked.every((c) => c !== null)) return checked as StoreReplyResult[];
    // The rest (duplicates, ended, a second use of an id in the batch) are stored or diagnosed as before.
    const rest = items.flatMap((r, i) => (checked[i] ? [] : [{ r, i }]));
    const results = await storeTx(
      db,
      rest.map(({ r }) => r),
      [],
    );
    rest.forEach(({ i }, k) => {
      checked[i] = results[k]!;
    });
    return checked as StoreReplyResult[];
  }
  return storeTx(db, items, checked);
};

/** Whether checkReplyRefs would look at this reply's payload (an error reply's is not checked). */
const mayHoldReplyRefs = (r: NewReply): boolean =>
  !r.error && r.payload !== undefined && r.payload.byteLength > 0 && mayHoldRefs(r.payload);

/** Stores the replies not `checked` yet in one transaction, or says why not. */
const storeTx = async (
  db: Db,
  items: readonly NewReply[],
  checked: readonly (StoreReplyResult | null)[],
): Promise<StoreReplyResult[]> => {
  const results = await db.tx(async (c) => {
    const out = items.map((_, i) => checked[i] ?? null);
    // Blob references are checked first; a forbidden one turns its reply into an error reply.
    const { items: toStore, refs } = await checkReplyRefs(c, items, out);
    const todo = toStore.map((r, i) => ({ r, i })).filter(({ i }) => !out[i]);
    if (db.d.name === "postgres") for (const [i, res] of await storeSetWise(c, todo)) out[i] = res;
    // In input order, so that of two items reusing a reply id the first wins (as on every backend). SQLite's
    // write lock covers the whole transaction, so the order cannot deadlock with another replica.
    else for (const { r, i } of todo) out[i] = await storeOne(c, r);
    if (refs.size > 0) await addReplyRefs(c, refs, out);
    return out as StoreReplyResult[];
  });
  if (results.some((r) => r.ok && !r.duplicate)) db.changed(forOthers(items, results));
  return results;
};

/**
 * What another replica may have to do about stored replies: deliver those not claimed for a stream here, of
 * their runs (false: nothing).
 */
const forOthers = (
  items: readonly NewReply[],
  results: readonly (StoreReplyResult | null)[],
): false | Change => {
  const runs = new Set<string>();
  items.forEach((r, i) => {
    const res = results[i];
    if (res?.ok === true && !res.duplicate && !r.claimed) runs.add(r.runId);
  });
  return runs.size > 0 && { runs: [...runs] };
};

/** Stores one reply, or says why not; inside the caller's transaction. */
const storeOne = async (c: SqlConn, r: TracedReply): Promise<StoreReplyResult> => {
  const id = r.id ?? newId();
  // Ending the instruction and inserting its reply happen in one transaction. The UPDATE's guard
  // (answerable: ended = 0) holds the instruction's row lock on PostgreSQL and the database write lock on
  // SQLite, so a racing store or sweep sees it ended and cannot add a second reply.
  const [ins] = await c.q(
    `UPDATE instructions SET ${END}
     WHERE id = $1 AND dst = $2 AND run_id = $3 AND ${answerable("$4")}
       AND NOT EXISTS (SELECT 1 FROM replies WHERE id = $5)
     RETURNING src, group_id, method`,
    [r.replyTo, r.nodeId, r.runId, c.now, id],
  );
  if (!ins) return diagnose(c, r);
  // The reply is what was inserted: built here rather than read back (its payload would be copied twice).
  const reply: Reply = {
    id,
    runId: r.runId,
    src: r.nodeId,
    dst: ins.src as string,
    replyTo: r.replyTo,
    groupId: (ins.group_id as string | null) ?? null,
    method: ins.method as string,
    payload: r.payload ?? new Uint8Array(0),
    createdAt: c.now,
    error: r.error?.code ? { code: r.error.code, message: r.error.message ?? "" } : null,
    traceparent: r.traceparent ?? null,
  };
  await c.q(INSERT_NODE_REPLY, [
    id,
    reply.runId,
    reply.src,
    reply.dst,
    reply.replyTo,
    reply.groupId,
    reply.method,
    reply.payload,
    reply.createdAt,
    r.error?.code ?? null,
    r.error?.message ?? null,
    r.claimed ? 1 : 0,
    reply.traceparent,
  ]);
  return { ok: true, reply, duplicate: false };
};

/** Why a reply was not stored (or that it is a duplicate), read inside the same transaction. */
const diagnose = async (c: SqlConn, r: NewReply): Promise<StoreReplyResult> => {
  const [run] = await c.q("SELECT id FROM runs WHERE id = $1", [r.runId]);
  if (!run) return { ok: false, error: new FleetlinkError("RUN_NOT_FOUND", `no run ${r.runId}`) };
  const [row] = await c.q("SELECT run_id, dst, expires_at FROM instructions WHERE id = $1", [r.replyTo]);
  const [existing] = await c.q("SELECT * FROM replies WHERE reply_to = $1", [r.replyTo]);
  const [taken] = r.id ? await c.q("SELECT 1 AS x FROM replies WHERE id = $1", [r.id]) : [];
  const info = row && {
    runId: row.run_id as string,
    dst: row.dst as string,
    expiresAt: Number(row.expires_at),
  };
  return diagnoseReply(r, info, existing && toReply(existing), Boolean(taken), c.now);
};

type Item = { r: TracedReply; i: number };

/**
 * PostgreSQL, set-based: one UPDATE ends every answerable instruction of the batch, one INSERT stores their
 * replies (two round trips per batch instead of two per reply). The UPDATE's guard (ended = 0) row-locks each
 * instruction, so a racing store or sweep of the same instruction waits and then finds it ended. A second item
 * for the same instruction, or reusing a reply id of an earlier item, is left to the one-by-one pass
 * afterwards, which stores it or says why not exactly as SQLite would (the first use of an id wins).
 *
 * The set-based part runs under a savepoint: another replica may commit a reply with one of our reply ids
 * after our UPDATE checked it (READ COMMITTED does not see uncommitted rows), and our INSERT then fails with a
 * unique violation once that replica commits. Rolling back to the savepoint undoes the UPDATE too (no
 * instruction ends without its reply), and the batch is stored item by item, each under its own savepoint, so
 * only the item with the taken id is refused.
 */
const storeSetWise = async (c: SqlConn, todo: Item[]): Promise<Map<number, StoreReplyResult>> => {
  const out = new Map<number, StoreReplyResult>();
  const first = new Map<string, Item & { id: string }>();
  const ids = new Set<string>();
  const later: Item[] = [];
  for (const t of todo) {
    const id = t.r.id ?? newId();
    if (first.has(t.r.replyTo) || ids.has(id)) later.push(t);
    else {
      ids.add(id);
      first.set(t.r.replyTo, { ...t, id });
    }
  }
  const batch = [...first.values()].sort((a, b) => (a.r.replyTo < b.r.replyTo ? -1 : 1));
  // Released at commit; not released here, which would cost a round trip.
  await c.q("SAVEPOINT store_batch");
  try {
    await storeSet(c, batch, out);
  } catch (e) {
    if (sqlState(e) !== UNIQUE_VIOLATION && sqlState(e) !== DEADLOCK) throw e;
    await c.q("ROLLBACK TO SAVEPOINT store_batch");
    out.clear();
    for (const b of batch) out.set(b.i, await storeAlone(c, { ...b.r, id: b.id }));
  }
  // Why the others were not stored is read before the second uses go, so that an id's first use is judged
  // as if it were alone.
  for (const b of batch) if (!out.has(b.i)) out.set(b.i, await diagnose(c, b.r));
  for (const t of later) out.set(t.i, await storeAlone(c, t.r));
  return out;
};

const storeSet = async (
  c: SqlConn,
  batch: (Item & { id: string })[],
  out: Map<number, StoreReplyResult>,
): Promise<void> => {
  const ended = await c.q(
    `UPDATE instructions i SET ${END}
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(reply_to, node_id, run_id, reply_id)
     WHERE i.id = t.reply_to AND i.dst = t.node_id AND i.run_id = t.run_id AND ${answerable("$5", "i")}
       AND NOT EXISTS (SELECT 1 FROM replies r WHERE r.id = t.reply_id)
     RETURNING i.id, i.src, i.group_id, i.method`,
    [
      batch.map((b) => b.r.replyTo),
      batch.map((b) => b.r.nodeId),
      batch.map((b) => b.r.runId),
      batch.map((b) => b.id),
      c.now,
    ],
  );
  const byId = new Map(ended.map((e) => [e.id as string, e]));
  const stored = batch.filter((b) => byId.has(b.r.replyTo));
  if (stored.length === 0) return;
  const rows = await c.q(
    `INSERT INTO replies (id, run_id, src, dst, reply_to, group_id, method, payload, created_at,
       error_code, error_message, claimed, traceparent)
     SELECT t.id, t.run_id, t.src, t.dst, t.reply_to, t.group_id, t.method, t.payload, $9, t.error_code, t.error_message, t.claimed,
       t.traceparent
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[],
       $10::text[], $11::text[], $12::int[], $13::text[])
       AS t(id, run_id, src, dst, reply_to, group_id, method, payload, error_code, error_message, claimed, traceparent)
     RETURNING *`,
    [
      stored.map((b) => b.id),
      stored.map((b) => b.r.runId),
      stored.map((b) => b.r.nodeId),
      stored.map((b) => byId.get(b.r.replyTo)!.src),
      stored.map((b) => b.r.replyTo),
      stored.map((b) => byId.get(b.r.replyTo)!.group_id ?? null),
      stored.map((b) => byId.get(b.r.replyTo)!.method),
      stored.map((b) => Buffer.from(b.r.payload ?? new Uint8Array(0))),
      c.now,
      stored.map((b) => b.r.error?.code ?? null),
      stored.map((b) => b.r.error?.message ?? null),
      stored.map((b) => (b.r.claimed ? 1 : 0)),
      stored.map((b) => b.r.traceparent ?? null),
    ],
  );
  const replies = new Map(rows.map((r) => [r.reply_to as string, toReply(r)]));
  for (const b of stored) out.set(b.i, { ok: true, reply: replies.get(b.r.replyTo)!, duplicate: false });
};

/**
 * One reply under its own savepoint: if another replica commits a reply with the same id first, this one is
 * undone and refused (diagnosed), and the rest of the batch goes on. A deadlock (two replicas each waiting for
 * the other's reply id) undoes this item only; it is tried again once the other side has moved on.
 */
const storeAlone = async (c: SqlConn, r: TracedReply): Promise<StoreReplyResult> => {
  for (let attempt = 1; ; attempt++) {
    await c.q("SAVEPOINT store_one");
    try {
      const res = await storeOne(c, r);
      await c.q("RELEASE SAVEPOINT store_one");
      return res;
    } catch (e) {
      const state = sqlState(e);
      if ((state !== UNIQUE_VIOLATION && state !== DEADLOCK) || attempt >= 3) throw e;
      await c.q("ROLLBACK TO SAVEPOINT store_one");
      await c.q("RELEASE SAVEPOINT store_one");
      if (state === UNIQUE_VIOLATION) return diagnose(c, r);
    }
  }
};
