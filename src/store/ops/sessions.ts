import { FleetlinkError } from "../../protocol/errors.ts";
import type { NodeRecord } from "../../protocol/types.ts";
import type { Db } from "../dialect.ts";
import { bySeq, toNode } from "../rows.ts";
import { leasedTo, notUnregistered, onlineWindow, RELEASE } from "../rules.ts";
import {
  checkExtendLeases,
  checkId,
  checkIds,
  checkName,
  checkOpenSession,
  checkPositiveInt,
  checkRelease,
  checkRenewals,
  type ExtendLeasesInput,
  type LeaveSessionInput,
  type LeaveSessionResult,
  type OpenSessionInput,
  type OpenSessionResult,
  type ReleaseInput,
  type SessionRenewal,
  sessionSuperseded,
} from "../store.ts";
import { Batches, batchesOf, type Outcome } from "./batches.ts";
import { nodeRow } from "./nodes.ts";
import { openSessionBatched } from "./open-sessions.ts";

export const heartbeat = async (
  db: Db,
  nodeId: string,
  heartbeatIntervalMs?: number,
  sessionId?: string,
): Promise<NodeRecord> => {
  if (heartbeatIntervalMs !== undefined) checkPositiveInt("heartbeatIntervalMs", heartbeatIntervalMs);
  if (sessionId !== undefined) checkName("sessionId", sessionId);
  return db.tx(async (c) => {
    // The status and session guards are in the UPDATE itself, so a heartbeat racing an unregister can never
    // revive the node, and one racing a newer session's opening never writes for the superseded stream.
    const [r] = await c.q(
      `UPDATE nodes SET status = 'online',
         heartbeat_interval_ms = COALESCE($1, heartbeat_interval_ms),
         online_until = ${onlineWindow("$2", "COALESCE($1, heartbeat_interval_ms)")}
       WHERE id = $3 AND ${notUnregistered()} AND (CAST($4 AS TEXT) IS NULL OR session_id = $4) RETURNING *`,
      [heartbeatIntervalMs ?? null, c.now, checkId("nodeId", nodeId), sessionId ?? null],
    );
    if (r) return toNode(r);
    const cur = await nodeRow(c, nodeId);
    if (cur.status === "unregistered")
      throw new FleetlinkError("NODE_UNREGISTERED", `node ${nodeId} is unregistered`);
    throw sessionSuperseded(nodeId, sessionId!);
  });
};

/**
 * Makes the stream the node's session: its row is written first, in one transaction with keeping the leases
 * it names and giving back the rest. A claim for the superseded session holds the row share-locked
 * (PostgreSQL) or the write lock (SQLite) from its session check to its commit, so the claim either commits
 * before the row is written (and the release, which runs after it, sees its leases) or runs after this commit,
 * finds another session and takes nothing. Hellos arriving together share that transaction (open-sessions.ts).
 */
export const openSession = async (db: Db, input: OpenSessionInput): Promise<OpenSessionResult> => {
  checkOpenSession(input);
  return openSessionBatched(db, input);
};

export const leaveSession = async (db: Db, input: LeaveSessionInput): Promise<LeaveSessionResult> => {
  checkId("nodeId", input.nodeId);
  checkName("sessionId", input.sessionId);
  const out = await db.tx(async (c) => {
    // The session guard is in the UPDATE: a leave racing a newer session's opening (the node restarted
    // elsewhere) changes nothing, and clearing session_id makes a late batched heartbeat of the leaving
    // session write nothing (renewSessions matches on it), so nothing revives the node but a new hello.
    const [r] = await c.q(
      `UPDATE nodes SET status = 'offline', online_until = $1, session_id = NULL
       WHERE id = $2 AND session_id = $3 AND ${notUnregistered()} RETURNING id`,
      [c.now, input.nodeId, input.sessionId],
    );
    if (!r) {
      await nodeRow(c, input.nodeId);
      return { left: false, released: 0 };
    }
    const released = await c.q(`UPDATE instructions SET ${RELEASE} WHERE ${leasedTo("$1")} RETURNING id`, [
      input.nodeId,
    ]);
    return { left: true, released: released.length };
  });
  if (out.left) db.changed();
  return out;
};

export const renewSessions = async (
  db: Db,
  items: readonly SessionRenewal[],
): Promise<Map<string, number>> => {
  checkRenewals(items);
  if (items.length === 0) return new Map();
  const rows = items.map((r) => ({
    id: r.nodeId,
    sid: r.sessionId,
    iv: r.heartbeatIntervalMs ?? null,
    age: r.ageMs,
  }));
  const out = await db.tx(async (c) => {
    // One statement for every node: the session and status guards are in it, as in `heartbeat`, so a
    // superseded stream or an unregistered node is never written (and is left out of what it returns).
    const until = onlineWindow("CAST($2 AS BIGINT) - u.age", "COALESCE(u.iv, nodes.heartbeat_interval_ms)");
    return c.q(
      `UPDATE nodes SET status = 'online',
         heartbeat_interval_ms = COALESCE(u.iv, nodes.heartbeat_interval_ms),
         online_until = CASE WHEN nodes.online_until IS NULL OR ${until} > nodes.online_until
           THEN ${until} ELSE nodes.online_until END
       FROM ${db.d.renewalRows("$1")}
       WHERE nodes.id = u.id AND nodes.session_id = u.sid AND ${notUnregistered("nodes")}
       RETURNING nodes.id, nodes.online_until`,
      [JSON.stringify(rows), c.now],
    );
  });
  return new Map(out.map((r) => [r.id as string, Number(r.online_until)]));
};

export const getSessions = async (
  db: Db,
  nodeIds: readonly string[],
): Promise<Map<string, string | null>> => {
  checkIds("nodeIds", nodeIds);
  if (nodeIds.length === 0) return new Map();
  const rows = await db.tx(
    (c) => c.q(`SELECT id, session_id FROM nodes WHERE id IN ${db.d.list("$1")}`, [db.d.listParam(nodeIds)]),
    "read",
  );
  return new Map(rows.map((r) => [r.id as string, (r.session_id as string | null) ?? null]));
};

export const extendLeases = async (db: Db, input: ExtendLeasesInput): Promise<string[]> => {
  checkExtendLeases(input);
  if (input.instructionIds.length === 0) return [];
  const rows = await db.tx(async (c) => {
    const until = c.now + (input.leaseMs ?? db.options.leaseMs);
    return c.q(
      `UPDATE instructions SET lease_until = CASE WHEN expires_at < $1 THEN expires_at ELSE $1 END
       WHERE ${leasedTo("$2")} AND lease_owner = $3 AND id IN ${db.d.list("$4")}
       RETURNING seq, id`,
      [until, input.nodeId, input.sessionId, db.d.listParam(input.instructionIds)],
    );
  });
  return rows.sort(bySeq).map((r) => r.id as string);
};

/** Releases in one transaction at most. */
const MAX_RELEASES = 256;
const releases = new WeakMap<Db, Batches<ReleaseInput, number>>();

/**
 * Gives back a node's leases (of one owner, if given). Releases arriving together (a hub shutting down, a network
 * blip closing thousands of streams) share one transaction (batches.ts), one per node at most.
 */
export const releaseInstructions = async (db: Db, input: ReleaseInput): Promise<number> => {
  checkRelease(input);
  const n = await batchesOf(
    releases,
    db,
    () =>
      new Batches(
        (items) => releaseMany(db, items),
        (r) => r.nodeId,
        MAX_RELEASES,
      ),
  ).add(input);
  if (n) db.changed();
  return n;
};

const releaseMany = async (db: Db, items: readonly ReleaseInput[]): Promise<Outcome<number>[]> => {
  const { d } = db;
  const counts = await db.tx(async (c) => {
    const released = new Map<string, number>();
    const count = (rows: readonly { dst?: unknown }[]) => {
      for (const r of rows) released.set(r.dst as string, (released.get(r.dst as string) ?? 0) + 1);
    };
    // In node id order, as a batch of hellos releases them (two orders could deadlock on PostgreSQL).
    const sorted = [...items].sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
    const plain = sorted.filter((i) => !i.exceptIds?.length);
    if (plain.length > 0)
      count(
        await c.q(
          `UPDATE instructions SET ${RELEASE}
           FROM ${
             d.name === "sqlite"
               ? `(SELECT json_extract(value, '$.node') AS node, json_extract(value, '$.owner') AS owner
                   FROM json_each($1)) AS r`
               : "json_to_recordset($1::json) AS r(node text, owner text)"
           }
           WHERE ${leasedTo("r.node")} AND (r.owner IS NULL OR lease_owner = r.owner)
           RETURNING instructions.dst`,
          [JSON.stringify(plain.map((i) => ({ node: i.nodeId, owner: i.owner ?? null })))],
        ),
      );
    for (const i of sorted)
      if (i.exceptIds?.length)
        count(
          await c.q(
            `UPDATE instructions SET ${RELEASE}
             WHERE ${leasedTo("$1")} AND (CAST($2 AS TEXT) IS NULL OR lease_owner = $2)
               AND id NOT IN ${d.list("$3")} RETURNING dst`,
            [i.nodeId, i.owner ?? null, d.listParam(i.exceptIds)],
          ),
        );
    return released;
  });
  return items.map((i) => ({ ok: counts.get(i.nodeId) ?? 0 }));
};
