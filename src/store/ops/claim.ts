// Claims: how an instruction (or a reply) is handed out exactly once, however many replicas race for it.
//
// Strategy, one atomic statement per claim, never a read followed by a write:
// - SQLite: one UPDATE … WHERE seq IN (SELECT … claimable … LIMIT) RETURNING *, run as its own transaction
//   (no BEGIN: inside an explicit transaction SQLite keeps a statement journal that bench:claim measured as a
//   large cost for multi-row claims). A write statement takes SQLite's single write lock before it reads
//   anything and holds it while it selects and marks the rows; another process's claim waits for the lock (see
//   SqliteStore's busy retry) and then no longer finds them claimable (leased, lease in the future). The same
//   lock covers the session check: a session opened by another replica either committed before (the check
//   fails) or waits until this claim committed (and then releases what it took). The time is read after this
//   connection's turn came, right before the statement.
// - PostgreSQL: FOR UPDATE SKIP LOCKED row-locks every picked instruction until commit and makes a concurrent
//   claim skip it; once committed the row is 'leased' with a lease in the future, and PostgreSQL re-checks the
//   WHERE clause against that newest version before a later claim may lock it. The lateral join takes the
//   oldest `limit` rows of each node, so one statement serves many nodes. With sessions, the node rows are
//   share-locked (in id order, so claims never deadlock each other) before any instruction is picked: an
//   openSession that changed a node's session first makes this claim wait and then re-check the session against
//   the committed row (no match: nothing claimed for that node); one that comes later waits for this claim's
//   commit and then releases what it took.
// Both statements pick by the one `claimable` rule and lease by the one `leaseTo` rule (rules.ts).
import type { Instruction, Reply } from "../../protocol/types.ts";
import type { Db } from "../dialect.ts";
import { bySeq, toInstruction, toReply } from "../rows.ts";
import { claimable, leaseTo } from "../rules.ts";
import {
  type ClaimInstructionsInput,
  type ClaimRepliesInput,
  checkClaim,
  checkId,
  checkIds,
  checkPositiveInt,
} from "../store.ts";

export const claimInstructions = async (db: Db, input: ClaimInstructionsInput): Promise<Instruction[]> => {
  const sessions = checkClaim(input);
  const nodeIds = sessions ? sessions.map((x) => x.nodeId) : input.nodeIds!;
  if (nodeIds.length === 0) return [];
  const { d } = db;
  const leaseMs = input.leaseMs ?? db.options.leaseMs;
  const rows = await db.auto((q, nowParam) => {
    // $1 lease length, $2 the store's time, $3 the nodes, $4 rows per node, $5 the owner (or the sessions).
    const now = d.now("$2");
    const lease = (owner: string, a?: string) => leaseTo(now, `${now} + CAST($1 AS BIGINT)`, owner, a);
    if (d.name === "sqlite") {
      // The oldest `limit` claimable rows of each node (a window per node when there are several).
      const oldest = (nodes: string) =>
        nodeIds.length === 1
          ? `SELECT seq FROM instructions WHERE dst = ${nodes} AND ${claimable(now)} ORDER BY seq LIMIT $4`
          : `SELECT seq FROM (
               SELECT seq, row_number() OVER (PARTITION BY dst ORDER BY seq) AS rn FROM instructions
               WHERE dst IN ${nodes} AND ${claimable(now)})
             WHERE rn <= $4`;
      if (!sessions)
        return q(
          `UPDATE instructions SET ${lease("$5")}
           WHERE seq IN (${oldest(nodeIds.length === 1 ? "$3" : d.list("$3"))}) RETURNING *`,
          [
            leaseMs,
            nowParam,
            nodeIds.length === 1 ? nodeIds[0] : d.listParam(nodeIds),
            input.limit,
            input.owner ?? null,
          ],
        );
      if (sessions.length === 1)
        return q(
          `UPDATE instructions SET ${lease("$5")}
           WHERE seq IN (${oldest("$3")}) AND EXISTS (SELECT 1 FROM nodes WHERE id = $3 AND session_id = $5)
           RETURNING *`,
          [leaseMs, nowParam, sessions[0]!.nodeId, input.limit, sessions[0]!.sessionId],
        );
      return q(
        `UPDATE instructions SET ${lease("(SELECT session_id FROM nodes n WHERE n.id = instructions.dst)")}
         WHERE seq IN (${oldest(`(SELECT n.id FROM json_each($3) AS s JOIN nodes n
             ON n.id = json_extract(s.value, '$[0]') AND n.session_id = json_extract(s.value, '$[1]'))`)})
         RETURNING *`,
        [leaseMs, nowParam, JSON.stringify(sessions.map((x) => [x.nodeId, x.sessionId])), input.limit],
      );
    }
    const live = sessions
      ? `SELECT n.id AS dst, n.session_id AS owner FROM unnest($3::text[], $5::text[]) AS t(dst, sid)
         JOIN nodes n ON n.id = t.dst AND n.session_id = t.sid ORDER BY n.id FOR SHARE OF n`
      : "SELECT dst, $5::text AS owner FROM unnest($3::text[]) AS t(dst)";
    return q(
      `WITH live AS MATERIALIZED (${live}),
       picked AS MATERIALIZED (
         SELECT c.seq, live.owner FROM live
         CROSS JOIN LATERAL (
           SELECT seq FROM instructions WHERE dst = live.dst AND ${claimable(now)}
           ORDER BY seq LIMIT $4
           FOR UPDATE SKIP LOCKED) c)
       UPDATE instructions i SET ${lease("picked.owner", "i")}
       FROM picked WHERE i.seq = picked.seq
       RETURNING i.*`,
      [
        leaseMs,
        nowParam,
        nodeIds,
        input.limit,
        sessions ? sessions.map((x) => x.sessionId) : (input.owner ?? null),
      ],
    );
  });
  return rows.sort(bySeq).map(toInstruction);
};

/** Same strategy as claimInstructions: a reply is marked claimed by exactly one caller. */
export const claimReplies = async (db: Db, input: ClaimRepliesInput): Promise<Reply[]> => {
  checkId("runId", input.runId);
  const limit = input.limit === undefined ? 1000 : checkPositiveInt("limit", input.limit);
  if (input.instructionIds) checkIds("instructionIds", input.instructionIds);
  const { d } = db;
  const only = input.instructionIds ? `AND reply_to IN ${d.list("$3")}` : "";
  const params = input.instructionIds
    ? [input.runId, limit, d.listParam(input.instructionIds)]
    : [input.runId, limit];
  const rows = await db.auto((q) =>
    d.name === "sqlite"
      ? q(
          `UPDATE replies SET claimed = 1 WHERE seq IN (
             SELECT seq FROM replies WHERE run_id = $1 AND claimed = 0 ${only} ORDER BY seq LIMIT $2)
           RETURNING *`,
          params,
        )
      : q(
          `WITH picked AS MATERIALIZED (
             SELECT seq FROM replies WHERE run_id = $1 AND claimed = 0 ${only}
             ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
           UPDATE replies r SET claimed = 1 FROM picked WHERE r.seq = picked.seq RETURNING r.*`,
          params,
        ),
  );
  return rows.sort(bySeq).map(toReply);
};

/** A read: the nodes with an instruction claimable now, by the same rule the claims pick by. */
export const claimableNodes = async (db: Db, limit = 10_000): Promise<string[]> => {
  checkPositiveInt("limit", limit);
  const rows = await db.auto((q, nowParam) =>
    q(`SELECT DISTINCT dst FROM instructions WHERE ${claimable(db.d.now("$1"))} LIMIT $2`, [nowParam, limit]),
  );
  return rows.map((r) => r.dst as string);
};
