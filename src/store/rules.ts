// The store's business rules, each written once as a SQL fragment that every operation and both dialects use.
// `now` / `cutoff` is a SQL expression for a time (a parameter such as "$2", or `Dialect.now(p)`); `a` is the
// alias of the table the fragment reads (none: its unqualified columns). Nothing here is re-implemented in
// TypeScript: a TS function that explains a refusal (`diagnoseReply`, `enrollRefusal`) only runs after the
// SQL rule said no, to say why.

const at = (a: string | undefined) => (column: string) => (a ? `${a}.${column}` : column);

// ---- instructions ----

/** Not ended and not expired: a reply can still be stored for it. */
export const answerable = (now: string, a?: string): string => {
  const c = at(a);
  return `${c("ended")} = 0 AND ${c("expires_at")} > ${now}`;
};

/** Nobody holds it: never delivered or released (pending), or its lease ran out. */
const leaseFree = (now: string, a?: string): string => {
  const c = at(a);
  return `(${c("state")} = 'pending' OR ${c("lease_until")} <= ${now})`;
};

/** May be delivered now: answerable, attempts left, and nobody holds it. */
export const claimable = (now: string, a?: string): string => {
  const c = at(a);
  return `${answerable(now, a)} AND ${c("attempts")} < ${c("max_attempts")} AND ${leaseFree(now, a)}`;
};

/** Had its last allowed delivery, and that one is over (its lease ran out, or it was released). */
export const outOfAttempts = (now: string, a?: string): string => {
  const c = at(a);
  return `${c("attempts")} >= ${c("max_attempts")} AND ${leaseFree(now, a)}`;
};

/** Its TTL passed. */
export const expired = (now: string, a?: string): string => `${at(a)("expires_at")} <= ${now}`;

/** Node `n` is not online now: never was, or its online window ran out (whether or not a sweep said so). */
const offline = (now: string, n: string): string =>
  `(${n}.online_until IS NULL OR ${n}.online_until <= ${now})`;

/** Node `n` cannot take instructions now: unregistered or offline. */
export const nodeAway = (now: string, n: string): string =>
  `(NOT (${notUnregistered(n)}) OR ${offline(now, n)})`;

/** Instruction `i`'s node `n` is gone for it: unregistered, or offline while `i` does not wait for it. */
const nodeUnavailable = (now: string, i: string, n: string): string =>
  `(NOT (${notUnregistered(n)}) OR (${offline(now, n)} AND ${i}.hold_offline = 0))`;

/** Instruction `i` (of node `n`) can no longer be answered: a sweep ends it with the outcome below. */
export const unanswerable = (now: string, i: string, n: string): string =>
  `${i}.ended = 0 AND (${expired(now, i)} OR (${outOfAttempts(now, i)}) OR ${nodeUnavailable(now, i, n)})`;

/** The error code of the reply that ends an unanswerable instruction, first reason first. */
export const outcome = (now: string, i: string, n: string): string => `CASE
    WHEN ${nodeUnavailable(now, i, n)} THEN 'FLEETLINK_E_NODE_UNAVAILABLE'
    WHEN ${outOfAttempts(now, i)} THEN 'FLEETLINK_E_DELIVERY_FAILED'
    ELSE 'FLEETLINK_E_MESSAGE_EXPIRED'
  END`;

/**
 * SET clause of a delivery at `now`: leased to `owner` until `until`, one more attempt counted, and the first
 * delivery's time kept (a redelivery does not move it).
 */
export const leaseTo = (now: string, until: string, owner: string, a?: string): string =>
  `state = 'leased', attempts = ${at(a)("attempts")} + 1, lease_until = ${until}, lease_owner = ${owner},
   delivered_at = COALESCE(${at(a)("delivered_at")}, ${now})`;

/** SET clause that gives a lease back: claimable again at once (attempts are kept). */
export const RELEASE = "state = 'pending', lease_until = NULL, lease_owner = NULL";

/** SET clause that ends an instruction (with its reply, stored in the same transaction). */
export const END = "state = 'done', ended = 1, lease_until = NULL, lease_owner = NULL";

/** Instructions leased to node `dst` and not ended (a session's leases are among these). */
export const leasedTo = (dst: string): string => `dst = ${dst} AND ended = 0 AND state = 'leased'`;

/**
 * An instruction a node's hello says it still runs: leased to the node, or given back when its last stream or
 * session ended (delivered before: attempts > 0) and not ended since. Keeping it leases it to the new session
 * without a new delivery, so a reconnect (or a switch of transport) neither redelivers it nor spends an attempt.
 */
export const stillHeldBy = (dst: string, now: string): string =>
  `dst = ${dst} AND ${answerable(now)} AND (state = 'leased' OR attempts > 0)`;

// ---- nodes ----

/** Not unregistered: unregistering is final, so no write may revive a node (heartbeat, session, approval). */
export const notUnregistered = (a?: string): string => `${at(a)("status")} <> 'unregistered'`;

/** The end of a node's online window: two heartbeat intervals after a heartbeat at `t`. */
export const onlineWindow = (t: string, interval: string): string => `${t} + 2 * ${interval}`;

/**
 * A node holds its name while online, or while registered and young enough that it has not yet had the chance
 * to come online.
 */
export const holdsName = (now: string): string => `(status = 'online' AND online_until > ${now})
  OR (status = 'registered' AND ${onlineWindow("created_at", "heartbeat_interval_ms")} > ${now})`;

/**
 * Node `n` belongs to the tenant `tenant` (a SQL expression: a parameter, or a run's column): a run reaches only
 * nodes of its own tenant, and a node of another is, to it, a node that does not exist.
 */
export const sameTenant = (tenant: string, n?: string): string => `${at(n)("tenant")} = ${tenant}`;

/** Online by its status, but its window ran out: a sweep marks it offline. */
export const silentOnline = (now: string): string => `status = 'online' AND online_until <= ${now}`;

/**
 * A node cleanup deletes: offline, unregistered or never approved, silent since before the cutoff (its last sign
 * of life is its window's end, or its creation), and holding no live instruction.
 */
export const silentNode = (
  cutoff: string,
): string => `NOT (nodes.status = 'registered' AND nodes.approved = 1)
  AND COALESCE(nodes.online_until, nodes.created_at) <= ${cutoff}
  AND NOT EXISTS (SELECT 1 FROM instructions i WHERE i.dst = nodes.id AND i.ended = 0)`;

// ---- runs, replies, tokens ----

/**
 * A run starts with its first push: `UPDATE runs SET ${startRun(now)} WHERE ${STARTABLE}` in the push's own
 * transaction or statement, so a run with work in it is never seen pending. Later pushes find it running and
 * write nothing to it.
 */
export const STARTABLE = "status = 'pending'";
/** SET clause that starts a run (see STARTABLE). */
export const startRun = (now: string): string => `status = 'running', updated_at = ${now}`;

/**
 * A run cleanup finishes as abandoned: not finished, no live instruction, and nothing of it (itself, its
 * instructions, its replies) changed since the cutoff.
 */
export const quietRun = (
  cutoff: string,
): string => `runs.status <> 'finished' AND runs.updated_at <= ${cutoff}
  AND NOT EXISTS (SELECT 1 FROM instructions i WHERE i.run_id = runs.id AND (i.ended = 0 OR i.created_at > ${cutoff}))
  AND NOT EXISTS (SELECT 1 FROM replies r WHERE r.run_id = runs.id AND r.created_at > ${cutoff})`;

/** A finished run with nothing left of it; `finishedBefore` says which finished runs are old enough. */
export const emptyFinishedRun = (
  finishedBefore: string,
): string => `status = 'finished' AND (${finishedBefore})
  AND NOT EXISTS (SELECT 1 FROM instructions i WHERE i.run_id = runs.id)
  AND NOT EXISTS (SELECT 1 FROM replies r WHERE r.run_id = runs.id)`;

/** A reply its coordinator took before the cutoff: it, and the instruction it answers, may go. */
export const takenReply = (cutoff: string): string => `claimed = 1 AND created_at <= ${cutoff}`;

/** An enrollment token that can take a use now. */
export const usableToken = (now: string): string =>
  `revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ${now}) AND (uses IS NULL OR used < uses)`;

/** An enrollment token that became unusable before the cutoff (revoked, expired, or used up). */
export const deadToken = (cutoff: string): string =>
  `revoked_at <= ${cutoff} OR expires_at <= ${cutoff} OR (used >= uses AND used_at <= ${cutoff})`;

/** A principal that may act now: not revoked, not expired. */
export const usablePrincipal = (now: string): string =>
  `revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ${now})`;

/** A principal that became unusable before the cutoff (revoked or expired). */
export const deadPrincipal = (cutoff: string): string => `revoked_at <= ${cutoff} OR expires_at <= ${cutoff}`;

// ---- blobs ----

/**
 * Blob `b` has a live reference: an instruction referencing it has not ended, or a reply referencing it has not
 * been claimed. Upload and claim refs never keep a blob: they only say who may use it.
 */
export const liveBlob = (b: string): string => `EXISTS (SELECT 1 FROM blob_refs r WHERE r.sha256 = ${b}.sha256
    AND ((r.kind = 'instruction' AND EXISTS (SELECT 1 FROM instructions i WHERE i.id = r.owner AND i.ended = 0))
      OR (r.kind = 'reply' AND EXISTS (SELECT 1 FROM replies p WHERE p.id = r.owner AND p.claimed = 0))))`;
