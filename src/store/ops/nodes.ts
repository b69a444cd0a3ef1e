import { FleetlinkError } from "../../protocol/errors.ts";
import { newId } from "../../protocol/ids.ts";
import { DEFAULT_TENANT, type NodeRecord } from "../../protocol/types.ts";
import type { Db, SqlConn } from "../dialect.ts";
import { type Row, toNode } from "../rows.ts";
import { holdsName, notUnregistered } from "../rules.ts";
import {
  checkId,
  checkName,
  checkPositiveInt,
  type ListNodesOptions,
  type NewNode,
  tenantFilter,
  tenantOrDefault,
} from "../store.ts";
import { Batches, batchesOf, type Outcome } from "./batches.ts";

/** The node's row; NODE_NOT_FOUND (naming `field`) if none. */
export const nodeRow = async (c: SqlConn, id: string, field = "nodeId"): Promise<Row> => {
  const [r] = await c.q("SELECT * FROM nodes WHERE id = $1", [checkId(field, id)]);
  if (!r) throw new FleetlinkError("NODE_NOT_FOUND", `no node ${id}`, { field });
  return r;
};

/**
 * The advisory lock key of a name (see registerNodes). Names are unique per tenant, so a tenant cannot learn of
 * another's nodes by their names; the default tenant's key is the one from before tenants, so replicas of both
 * versions serialise on it during an upgrade.
 */
const nameLock = (tenant: string, name: string): string =>
  tenant === DEFAULT_TENANT ? `node-name:${name}` : `node-name:${tenant}/${name}`;

/** Enrolments in one transaction at most. */
const MAX_BATCH = 256;
const batches = new WeakMap<Db, Batches<NewNode, NodeRecord>>();

/**
 * Registers a node. Enrolments arriving together (a connect storm) share one transaction (batches.ts); two of
 * one name never share one, so the later finds the earlier's row and is refused, as if each had its own.
 */
export const registerNode = async (db: Db, input: NewNode): Promise<NodeRecord> => {
  checkName("name", input.name);
  checkPositiveInt("heartbeatIntervalMs", input.heartbeatIntervalMs);
  tenantOrDefault("tenant", input.tenant);
  return batchesOf(
    batches,
    db,
    () =>
      new Batches(
        (items) => registerNodes(db, items),
        (n) => n.name,
        MAX_BATCH,
      ),
  ).add(input);
};

/** Registers each of `items` (distinct names) in one transaction; a name a live node holds is NAME_TAKEN. */
export const registerNodes = async (db: Db, items: readonly NewNode[]): Promise<Outcome<NodeRecord>[]> => {
  const { d } = db;
  const rows = items.map((n) => ({
    id: newId(),
    name: n.name,
    iv: n.heartbeatIntervalMs,
    ch: n.credentialHash ?? null,
    ap: n.approved === false ? 0 : 1,
    t: tenantOrDefault("tenant", n.tenant),
  }));
  return db.tx(async (c) => {
    // Why racing replicas cannot both take a name: registrations of one name serialise on its lock (PostgreSQL)
    // or the database write lock (SQLite) from before the check until after the insert commits, and the check
    // is part of a statement run after the lock is held, so it sees the winner's committed row. A batch takes
    // its names' locks (Dialect.lockKey's key space) in one statement, in the locks' order, so two batches never
    // deadlock.
    if (d.lockKey)
      await c.q(
        `SELECT pg_advisory_xact_lock(hashtext('fleetlink:' || current_schema()), hashtext(k))
         FROM (SELECT unnest($1::text[]) AS k) AS names ORDER BY hashtext(k)`,
        [rows.map((r) => nameLock(r.t, r.name))],
      );
    const u =
      d.name === "sqlite"
        ? `(SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.name') AS name,
             json_extract(value, '$.iv') AS iv, json_extract(value, '$.ch') AS ch, json_extract(value, '$.ap') AS ap,
             json_extract(value, '$.t') AS t
           FROM json_each($1)) AS u`
        : "json_to_recordset($1::json) AS u(id text, name text, iv bigint, ch text, ap integer, t text)";
    const inserted = await c.q(
      `INSERT INTO nodes (id, name, status, heartbeat_interval_ms, online_until, credential_hash, created_at, approved,
         tenant)
       SELECT u.id, u.name, 'registered', u.iv, NULL, u.ch, $2, u.ap, u.t FROM ${u}
       WHERE NOT EXISTS (
         SELECT 1 FROM nodes WHERE nodes.name = u.name AND nodes.tenant = u.t AND (${holdsName("$2")}))
       RETURNING *`,
      [JSON.stringify(rows), c.now],
    );
    const byName = new Map(inserted.map((r) => [r.name as string, r]));
    const out: Outcome<NodeRecord>[] = [];
    for (const n of items) {
      const r = byName.get(n.name);
      if (r) {
        out.push({ ok: toNode(r) });
        continue;
      }
      const [holder] = await c.q(
        `SELECT id FROM nodes WHERE name = $1 AND tenant = $3 AND (${holdsName("$2")}) LIMIT 1`,
        [n.name, c.now, tenantOrDefault("tenant", n.tenant)],
      );
      out.push({
        error: new FleetlinkError(
          "NAME_TAKEN",
          `a live node (${holder?.id}) is named ${n.name}: choose another name, or stop that node and unregister it (fleetlink nodes unregister ${holder?.id}) to take its name`,
          {
            field: "name",
          },
        ),
      });
    }
    return out;
  });
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

const reads = new WeakMap<Db, Batches<string, NodeRecord>>();

/** Reads a node; reads arriving together (every stream's upgrade in a connect storm) share one statement. */
export const getNode = async (db: Db, id: string): Promise<NodeRecord> => {
  checkId("nodeId", id);
  return batchesOf(
    reads,
    db,
    () =>
      new Batches(
        (ids) => getNodes(db, ids),
        (i) => i,
        MAX_BATCH,
      ),
  ).add(id);
};

const getNodes = async (db: Db, ids: readonly string[]): Promise<Outcome<NodeRecord>[]> => {
  const rows = await db.tx(
    (c) => c.q(`SELECT * FROM nodes WHERE id IN ${db.d.list("$1")}`, [db.d.listParam(ids)]),
    "read",
  );
  const byId = new Map(rows.map((r) => [r.id as string, r]));
  return ids.map((id) => {
    const r = byId.get(id);
    return r
      ? { ok: toNode(r) }
      : { error: new FleetlinkError("NODE_NOT_FOUND", `no node ${id}`, { field: "nodeId" }) };
  });
};

export const listNodes = async (db: Db, opts: ListNodesOptions = {}): Promise<NodeRecord[]> => {
  const tenant = tenantFilter(opts.tenant);
  const rows = await db.tx(
    (c) =>
      c.q(
        `SELECT * FROM nodes WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
           AND (CAST($2 AS TEXT) IS NULL OR tenant = $2) ORDER BY id`,
        [opts.status ?? null, tenant],
      ),
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
