// Opening sessions, grouped: the hellos of a connect storm reach the store together, one transaction per batch
// instead of one each (bench:fanout: 10,000 nodes saying hello made 10,000 write transactions, each a
// BEGIN … COMMIT with a WAL write on SQLite and four round trips and a commit on PostgreSQL).
//
// Fencing is as for one: a batch writes its nodes' rows first (on PostgreSQL locked in id order, as claims lock
// them, so a batch and a claim or another replica's batch never deadlock), then keeps and releases leases in the
// same transaction. A node appears at most once per batch, so of two hellos of one node the later one is
// written by a later transaction and wins, as before.
import { FleetlinkError } from "../../protocol/errors.ts";
import type { Db } from "../dialect.ts";
import { toNode } from "../rows.ts";
import { leasedTo, notUnregistered, onlineWindow, RELEASE, stillHeldBy } from "../rules.ts";
import type { OpenSessionInput, OpenSessionResult } from "../store.ts";
import { Batches, batchesOf, type Outcome } from "./batches.ts";
import { nodeRow } from "./nodes.ts";

/** Hellos in one transaction at most: bounds how long a batch holds its nodes' rows. */
const MAX_BATCH = 256;

const batches = new WeakMap<Db, Batches<OpenSessionInput, OpenSessionResult>>();

/** Queues a checked hello for this store's next session-opening transaction. */
export const openSessionBatched = (db: Db, input: OpenSessionInput): Promise<OpenSessionResult> =>
  batchesOf(
    batches,
    db,
    () =>
      new Batches(
        (items) => openSessions(db, items),
        (i) => i.nodeId,
        MAX_BATCH,
      ),
  ).add(input);

/** Opens a session for each item (distinct nodes) in one transaction; each item gets its own outcome. */
export const openSessions = async (
  db: Db,
  items: readonly OpenSessionInput[],
): Promise<Outcome<OpenSessionResult>[]> => {
  const { d } = db;
  const ids = items.map((i) => i.nodeId);
  const rows = items.map((i) => ({
    id: i.nodeId,
    sid: i.sessionId,
    iv: i.heartbeatIntervalMs ?? null,
    an: i.agent?.name ?? null,
    av: i.agent?.version ?? null,
    p: i.protocol ?? 1,
  }));
  const out = await db.tx(async (c) => {
    const now = c.now;
    const iv = "COALESCE(u.iv, nodes.heartbeat_interval_ms)";
    const set = `status = 'online', session_id = u.sid, heartbeat_interval_ms = ${iv},
      online_until = ${onlineWindow("$2", iv)}, agent_name = u.an, agent_version = u.av, protocol = u.p`;
    // The node rows first (see openSession for why that order keeps claims of a superseded session out).
    const opened =
      d.name === "sqlite"
        ? await c.q(
            `UPDATE nodes SET ${set}
             FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.sid') AS sid,
                     json_extract(value, '$.iv') AS iv, json_extract(value, '$.an') AS an,
                     json_extract(value, '$.av') AS av, json_extract(value, '$.p') AS p
                   FROM json_each($1)) AS u
             WHERE nodes.id = u.id AND ${notUnregistered("nodes")} RETURNING *`,
            [JSON.stringify(rows), now],
          )
        : await c.q(
            `WITH locked AS MATERIALIZED (
               SELECT id FROM nodes WHERE id IN ${d.list("$3")} ORDER BY id FOR UPDATE)
             UPDATE nodes SET ${set}
             FROM json_to_recordset($1::json) AS u(id text, sid text, iv bigint, an text, av text, p integer),
               locked
             WHERE nodes.id = u.id AND locked.id = u.id AND ${notUnregistered("nodes")} RETURNING nodes.*`,
            [JSON.stringify(rows), now, d.listParam(ids)],
          );
    const byId = new Map(opened.map((r) => [r.id as string, r]));
    const released = new Map<string, number>();
    const count = (rs: readonly { dst?: unknown }[]) => {
      for (const r of rs) released.set(r.dst as string, (released.get(r.dst as string) ?? 0) + 1);
    };
    const plain: string[] = [];
    // Node by node in id order (another replica's batch of the same nodes goes in the same order).
    for (const i of [...items].sort(byNode)) {
      if (!byId.has(i.nodeId)) continue;
      if (!i.keep?.length) {
        plain.push(i.nodeId);
        continue;
      }
      const keep = d.listParam(i.keep);
      await c.q(
        `UPDATE instructions SET state = 'leased', lease_owner = $1, lease_until = $2
         WHERE ${stillHeldBy("$3", "$5")} AND id IN ${d.list("$4")}`,
        [i.sessionId, now + db.options.leaseMs, i.nodeId, keep, now],
      );
      count(
        await c.q(
          `UPDATE instructions SET ${RELEASE} WHERE ${leasedTo("$1")} AND id NOT IN ${d.list("$2")} RETURNING dst`,
          [i.nodeId, keep],
        ),
      );
    }
    // Nodes that keep nothing give back every lease, in one statement for all of them.
    if (plain.length > 0)
      count(
        await c.q(
          `UPDATE instructions SET ${RELEASE}
           FROM ${d.name === "sqlite" ? "(SELECT value AS id FROM json_each($1)) AS r" : "unnest($1::text[]) AS r(id)"}
           WHERE ${leasedTo("r.id")} RETURNING instructions.dst`,
          [d.listParam(plain)],
        ),
      );
    const outcomes: Outcome<OpenSessionResult>[] = [];
    for (const i of items) {
      const r = byId.get(i.nodeId);
      if (r) {
        outcomes.push({ ok: { node: toNode(r), released: released.get(i.nodeId) ?? 0 } });
        continue;
      }
      // Not opened: unknown (NODE_NOT_FOUND) or unregistered.
      try {
        await nodeRow(c, i.nodeId);
        outcomes.push({
          error: new FleetlinkError("NODE_UNREGISTERED", `node ${i.nodeId} is unregistered`),
        });
      } catch (e) {
        outcomes.push({ error: e });
      }
    }
    return outcomes;
  });
  if (out.some((o) => "ok" in o && o.ok.released > 0)) db.changed();
  return out;
};

const byNode = (a: { nodeId: string }, b: { nodeId: string }): number =>
  a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0;
