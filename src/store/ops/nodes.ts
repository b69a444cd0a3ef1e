import { FleetlinkError } from "../../protocol/errors.ts";
import { newId } from "../../protocol/ids.ts";
import type { NodeRecord, NodeStatus } from "../../protocol/types.ts";
import type { Db, SqlConn } from "../dialect.ts";
import { type Row, toNode } from "../rows.ts";
import { holdsName, notUnregistered } from "../rules.ts";
import { checkId, checkName, checkPositiveInt, type NewNode } from "../store.ts";

/** The node's row; NODE_NOT_FOUND (naming `field`) if none. */
export const nodeRow = async (c: SqlConn, id: string, field = "nodeId"): Promise<Row> => {
  const [r] = await c.q("SELECT * FROM nodes WHERE id = $1", [checkId(field, id)]);
  if (!r) throw new FleetlinkError("NODE_NOT_FOUND", `no node ${id}`, { field });
  return r;
};

export const registerNode = async (db: Db, input: NewNode): Promise<NodeRecord> => {
  checkName("name", input.name);
  checkPositiveInt("heartbeatIntervalMs", input.heartbeatIntervalMs);
  const [r] = await db.tx(async (c) => {
    // Why racing replicas cannot both take a name: registrations of one name serialise on its lock (PostgreSQL)
    // or the database write lock (SQLite) from before the check until after the insert commits, and the check
    // is a statement run after the lock is held, so it sees the winner's committed row.
    if (db.d.lockKey) await c.q(db.d.lockKey, [`node-name:${input.name}`]);
    const [holder] = await c.q(`SELECT id FROM nodes WHERE name = $1 AND (${holdsName("$2")}) LIMIT 1`, [
      input.name,
      c.now,
    ]);
    if (holder)
      throw new FleetlinkError("NAME_TAKEN", `a live node (${holder.id}) is named ${input.name}`, {
        field: "name",
      });
    return c.q(
      `INSERT INTO nodes (id, name, status, heartbeat_interval_ms, online_until, credential_hash, created_at, approved)
       VALUES ($1, $2, 'registered', $3, NULL, $4, $5, $6) RETURNING *`,
      [
        newId(),
        input.name,
        input.heartbeatIntervalMs,
        input.credentialHash ?? null,
        c.now,
        input.approved === false ? 0 : 1,
      ],
    );
  });
  return toNode(r!);
};

export const approveNode = async (db: Db, nodeId: string): Promise<NodeRecord> =>
  db.tx(async (c) => {
    const [r] = await c.q(
      `UPDATE nodes SET approved = 1 WHERE id = $1 AND ${notUnregistered()} RETURNING *`,
      [checkId("nodeId", nodeId)],
    );
    if (r) return toNode(r);
    await nodeRow(c, nodeId);
    throw new FleetlinkError("NODE_UNREGISTERED", `node ${nodeId} is unregistered`);
  });

export const getNode = async (db: Db, id: string): Promise<NodeRecord> =>
  db.tx(async (c) => toNode(await nodeRow(c, id)), "read");

export const listNodes = async (db: Db, opts: { status?: NodeStatus } = {}): Promise<NodeRecord[]> => {
  const rows = await db.tx(
    (c) =>
      opts.status === undefined
        ? c.q("SELECT * FROM nodes ORDER BY id")
        : c.q("SELECT * FROM nodes WHERE status = $1 ORDER BY id", [opts.status]),
    "read",
  );
  return rows.map(toNode);
};

export const unregisterNode = async (db: Db, nodeId: string): Promise<NodeRecord> =>
  db.tx(async (c) => {
    const [r] = await c.q("UPDATE nodes SET status = 'unregistered' WHERE id = $1 RETURNING *", [
      checkId("nodeId", nodeId),
    ]);
    if (!r) await nodeRow(c, nodeId);
    return toNode(r!);
  });
