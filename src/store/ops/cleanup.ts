import type { Db, SqlConn } from "../dialect.ts";
import { deadPrincipal, deadToken, emptyFinishedRun, quietRun, silentNode, takenReply } from "../rules.ts";
import { ABANDONED_REASON, type CleanupResult, checkCleanupAge } from "../store.ts";
import { trimCancellations } from "./cancellations.ts";

/**
 * Every step locks what it changes with FOR UPDATE SKIP LOCKED on PostgreSQL (SQLite's write lock covers the
 * whole transaction): replicas cleaning up at once never wait on each other or deadlock, and each row is
 * changed, and counted, by exactly one of them. A row another replica holds is left to the next cleanup.
 */
export const cleanup = async (db: Db, olderThanMs: number): Promise<CleanupResult> => {
  checkCleanupAge(olderThanMs);
  const { d } = db;
  return db.tx(async (c) => {
    const cutoff = c.now - olderThanMs;
    const abandoned = await abandonRuns(db, c, cutoff);
    const gone = await c.q(
      `DELETE FROM instructions WHERE seq IN (
         SELECT seq FROM instructions WHERE ended = 1
           AND id IN (SELECT reply_to FROM replies WHERE ${takenReply("$1")})
         ORDER BY seq ${d.skipLocked()})
       RETURNING id`,
      [cutoff],
    );
    const replies = await c.q(
      `DELETE FROM replies WHERE seq IN (
         SELECT seq FROM replies WHERE ${takenReply("$1")}
           AND NOT EXISTS (SELECT 1 FROM instructions i WHERE i.id = replies.reply_to)
         ORDER BY seq ${d.skipLocked()})
       RETURNING id`,
      [cutoff],
    );
    // The runs just abandoned go too if nothing of theirs is left (their updated_at is now, not the cutoff).
    const runs = await c.q(
      `DELETE FROM runs WHERE id IN (
         SELECT id FROM runs WHERE ${emptyFinishedRun(`updated_at <= $1 OR id IN ${d.list("$2")}`)}
         ORDER BY id ${d.skipLocked()})
       RETURNING id`,
      [cutoff, d.listParam(abandoned)],
    );
    // The blob refs of deleted messages go with them (they could no longer be live), so refs do not pile up
    // under a blob that many messages reference over time.
    const owners = [...gone, ...replies].map((r) => r.id as string);
    if (owners.length > 0)
      await c.q(`DELETE FROM blob_refs WHERE kind IN ('instruction', 'reply') AND owner IN ${d.list("$1")}`, [
        d.listParam(owners),
      ]);
    // A deleted run's blob refs go with it: none of them can be live (its messages are gone).
    if (runs.length > 0)
      await c.q(`DELETE FROM blob_refs WHERE run_id IN ${d.list("$1")}`, [
        d.listParam(runs.map((r) => r.id as string)),
      ]);
    const tokens = await c.q(
      `DELETE FROM enroll_tokens WHERE seq IN (
         SELECT seq FROM enroll_tokens WHERE ${deadToken("$1")} ORDER BY seq ${d.skipLocked()})
       RETURNING id`,
      [cutoff],
    );
    const principals = await c.q(
      `DELETE FROM principals WHERE seq IN (
         SELECT seq FROM principals WHERE ${deadPrincipal("$1")} ORDER BY seq ${d.skipLocked()})
       RETURNING id`,
      [cutoff],
    );
    // The audit log is history: nothing here deletes it (the operator decides how long to keep it).
    await trimCancellations(c);
    // Last, so that the node locks (which a push waits for) are held for the shortest time.
    const nodes = await deleteSilentNodes(db, c, cutoff);
    return {
      instructions: gone.length,
      replies: replies.length,
      runs: runs.length,
      abandonedRuns: abandoned.length,
      nodes,
      enrollTokens: tokens.length,
      principals: principals.length,
    };
  });
};

/**
 * Finishes the runs abandoned before the cutoff; returns their ids. Two statements: the candidates are locked
 * first (SKIP LOCKED: a run a push holds share-locked is left alone), then re-checked and finished by a
 * compare-and-set in a statement of its own. In READ COMMITTED that statement sees every push and reply that
 * committed before the lock was had (the first statement's snapshot may predate them); a push that comes
 * later waits for the lock and then finds the run finished or gone. Replies need a live instruction, which a
 * candidate has none of, so none can be added meanwhile.
 */
const abandonRuns = async (db: Db, c: SqlConn, cutoff: number): Promise<string[]> => {
  const { d } = db;
  const picked = await c.q(`SELECT id FROM runs WHERE ${quietRun("$1")} ORDER BY id ${d.skipLocked()}`, [
    cutoff,
  ]);
  if (picked.length === 0) return [];
  const done = await c.q(
    `UPDATE runs SET status = 'finished', reason = $2, updated_at = $3
     WHERE id IN ${d.list("$4")} AND ${quietRun("$1")} RETURNING id`,
    [cutoff, ABANDONED_REASON, c.now, d.listParam(picked.map((r) => r.id as string))],
  );
  return done.map((r) => r.id as string);
};

/**
 * Deletes the silent nodes (see `silentNode`); returns how many. Locked first, then deleted by a statement that
 * checks every condition again: the age is in the DELETE itself, so a node whose heartbeat committed first is
 * kept (and a heartbeat that waited for the lock finds no node), and the live-instruction check sees every push
 * that committed before the lock was had (a push holds its nodes key-share-locked until commit, see push.ts).
 */
const deleteSilentNodes = async (db: Db, c: SqlConn, cutoff: number): Promise<number> => {
  const { d } = db;
  const picked = await c.q(`SELECT id FROM nodes WHERE ${silentNode("$1")} ORDER BY id ${d.skipLocked()}`, [
    cutoff,
  ]);
  if (picked.length === 0) return 0;
  const gone = await c.q(
    `DELETE FROM nodes WHERE id IN ${d.list("$2")} AND ${silentNode("$1")} RETURNING id`,
    [cutoff, d.listParam(picked.map((r) => r.id as string))],
  );
  return gone.length;
};
