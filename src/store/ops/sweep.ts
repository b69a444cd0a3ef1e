import type { Db } from "../dialect.ts";
import { END, expired, nodeAway, outcome, outOfAttempts, silentOnline, unanswerable } from "../rules.ts";
import type { OutcomeCode } from "../store.ts";
import { insertOutcome } from "./replies.ts";

/**
 * Marks silent nodes offline and ends every unanswerable instruction with its outcome reply. Safe on every
 * replica at once: PostgreSQL locks the rows it changes and skips those another replica holds (SKIP LOCKED),
 * SQLite's write lock covers the whole transaction; the `ended = 0` guard is re-checked on the locked rows.
 */
export const sweep = async (db: Db): Promise<number> => {
  const { d } = db;
  const made = await db.tx(async (c) => {
    await c.q(
      `UPDATE nodes SET status = 'offline' WHERE id IN (
         SELECT id FROM nodes WHERE ${silentOnline("$1")} ORDER BY id ${d.skipLocked()})`,
      [c.now],
    );
    const ended = await c.q(
      `SELECT i.seq, i.id, i.run_id, i.src, i.dst, i.group_id, i.method, i.state, ${outcome("$1", "i", "n")} AS code
       FROM instructions i JOIN nodes n ON n.id = i.dst
       WHERE i.seq IN (
           -- Candidates through indexes (a scan of every instruction ever kept would grow with history).
           SELECT seq FROM instructions WHERE ended = 0 AND ${expired("$1")}
           UNION ALL SELECT seq FROM instructions WHERE ended = 0 AND ${outOfAttempts("$1")}
           -- Live instructions of nodes away: driven from the live instructions (few, through the claim
           -- index), not from every node (an idle fleet of 10,000 made this a scan of 10,000 rows 4 × a second).
           UNION ALL SELECT x.seq FROM instructions x WHERE x.ended = 0 AND EXISTS (
             SELECT 1 FROM nodes w WHERE w.id = x.dst AND ${nodeAway("$1", "w")}))
         AND ${unanswerable("$1", "i", "n")}
       ORDER BY i.seq ${d.skipLocked("i")}`,
      [c.now],
    );
    for (const i of ended) {
      await c.q(`UPDATE instructions SET ${END} WHERE seq = $1`, [i.seq]);
      await insertOutcome(db, c, i, i.code as OutcomeCode, 0);
    }
    return ended.length;
  });
  if (made) db.changed();
  return made;
};
