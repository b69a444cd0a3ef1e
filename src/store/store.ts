import { FleetlinkError, invalid } from "../protocol/errors.ts";
import { isId } from "../protocol/ids.ts";
import { DEFAULT_MAX_PAYLOAD_BYTES, MAX_ERROR_MESSAGE_CHARS, MAX_TTL_MS } from "../protocol/limits.ts";
import type {
  Instruction,
  NodeRecord,
  NodeStatus,
  Reply,
  ReplyError,
  Run,
  RunStatus,
} from "../protocol/types.ts";
import { RUN_TRANSITIONS } from "../protocol/types.ts";

/** Returns the current time in ms. Injected so TTL, lease and heartbeat logic is tested without sleeping. */
export type Clock = () => number;

export interface StoreOptions {
  /**
   * Time source, for tests. Without one, the store judges leases, TTLs and online windows by the host's clock
   * (memory, SQLite: one host) or by the database's (PostgreSQL: every replica shares it, whatever its own
   * host's clock says). (Default: the host's clock; PostgreSQL: the database's)
   */
  clock?: Clock;
  /**
   * For fault tests: simulates a host whose clock is off by this many ms (the default clock becomes
   * Date.now() + clockOffsetMs). Ignored when `clock` is given; on PostgreSQL it changes no decision of the
   * store, which uses the database's clock. (Default: 0)
   */
  clockOffsetMs?: number;
  /** Lease length in ms for claimed instructions. (Default: 30000) */
  leaseMs?: number;
  /** Deliveries before an unanswered instruction ends in DELIVERY_FAILED, at most 1000. (Default: 3) */
  maxAttempts?: number;
  /** Largest payload accepted, in bytes. (Default: DEFAULT_MAX_PAYLOAD_BYTES, 4 MiB) */
  maxPayloadBytes?: number;
}

export interface ResolvedStoreOptions {
  /** The injected clock, or the host's (PostgreSQL without an injected clock decides by the database's). */
  clock: Clock;
  leaseMs: number;
  maxAttempts: number;
  maxPayloadBytes: number;
}

/** Most deliveries of one instruction (per item and store-wide). */
export const MAX_ATTEMPTS = 1000;
/**
 * Longest reply `error.message` a store keeps, in characters. The hub and the agent cut messages to
 * MAX_ERROR_MESSAGE_CHARS before they get here; this is the last guard, with room for their truncation note.
 */
export const MAX_STORED_ERROR_MESSAGE_CHARS = MAX_ERROR_MESSAGE_CHARS * 4;

const hostClock = (offsetMs = 0): Clock => {
  if (!Number.isSafeInteger(offsetMs)) throw invalid("clockOffsetMs", "must be an integer");
  return offsetMs === 0 ? Date.now : () => Date.now() + offsetMs;
};

export const resolveOptions = (o: StoreOptions = {}): ResolvedStoreOptions => ({
  clock: o.clock ?? hostClock(o.clockOffsetMs),
  leaseMs: o.leaseMs ?? 30_000,
  maxAttempts: o.maxAttempts === undefined ? 3 : checkAttempts("maxAttempts", o.maxAttempts),
  maxPayloadBytes: o.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES,
});

export interface NewNode {
  /** Unique among live nodes (see `Store.registerNode`). */
  name: string;
  /** Expected heartbeat interval in ms; the node is online until last heartbeat + 2 × interval. */
  heartbeatIntervalMs: number;
  credentialHash?: string | null;
  /** False: the node waits for `approveNode` before the hub lets it in. (Default: true) */
  approved?: boolean;
}

/** An enrollment token as stored: the secret itself is never kept, only its hash. */
export interface EnrollTokenRecord {
  id: string;
  label: string | null;
  secretHash: string;
  createdAt: number;
  /** The token is refused from this time on; null: never expires. */
  expiresAt: number | null;
  /** How many enrollments it allows; null: any number. */
  uses: number | null;
  /** Enrollments made with it so far. */
  used: number;
  revoked: boolean;
}

export interface NewEnrollToken {
  /** A hash of the token's secret (the store compares hashes, it never sees the secret). */
  secretHash: string;
  /** (Default: null) */
  label?: string | null;
  /** (Default: null, never expires) */
  expiresAt?: number | null;
  /** (Default: null, unlimited) */
  uses?: number | null;
}

export interface NewInstruction {
  dst: string;
  method: string;
  payload?: Uint8Array;
  ttlMs: number;
  groupId?: string | null;
  /** Who sent it. (Default: "coordinator") */
  src?: string;
  /** Deliveries allowed before DELIVERY_FAILED. (Default: the store's maxAttempts) */
  maxAttempts?: number;
  /** Wait for an offline node until the TTL instead of failing with NODE_UNAVAILABLE. (Default: false) */
  holdWhileOffline?: boolean;
  /** Caller-chosen id (UUID), for idempotent retries. (Default: a new UUIDv7) */
  id?: string;
  /**
   * Insert it already leased to this session (one delivery counted) when that is the destination's current
   * session, so the replica holding the node's stream sends it at once instead of pushing, waking and
   * claiming in three steps. Otherwise it is inserted pending, as without this. A store may ignore it.
   */
  leaseTo?: string;
}

/** A node's stream on one hub replica, named by an id the hub chose (see `Store.openSession`). */
export interface SessionRef {
  nodeId: string;
  sessionId: string;
}

export interface ClaimInstructionsInput {
  /** Claim for these nodes, leases held by `owner`. Give either this or `sessions`. */
  nodeIds?: readonly string[];
  /**
   * Claim for these sessions: only for nodes whose current session is the one given, each lease held by that
   * session (lease_owner = sessionId). Give either this or `nodeIds`; `owner` is not allowed with it.
   */
  sessions?: readonly SessionRef[];
  /** Most instructions per node, oldest first. */
  limit: number;
  /** Lease length for this claim. (Default: the store's leaseMs) */
  leaseMs?: number;
  /** Who holds the lease (a hub stream id), so only that holder can release it early. (Default: null) */
  owner?: string;
}

export interface OpenSessionInput {
  nodeId: string;
  /** The new session's id (chosen by the hub, unique per stream). */
  sessionId: string;
  /** The node's heartbeat interval from now on. (Default: the interval it has) */
  heartbeatIntervalMs?: number;
  /** Instructions the node says it is still working on: their leases move to the new session. */
  keep?: readonly string[];
}

/** A heartbeat a replica received on a node's stream and records later, batched with others (`renewSessions`). */
export interface SessionRenewal {
  nodeId: string;
  /** The stream's session: only recorded while it is the node's current one. */
  sessionId: string;
  /** The interval the node asked to be judged by. (Default: the interval it has) */
  heartbeatIntervalMs?: number;
  /** How long ago the heartbeat arrived, in ms (≥ 0): the node is online until then + 2 × interval. */
  ageMs: number;
}

export interface PushCall {
  runId: string;
  items: readonly NewInstruction[];
}

export type PushResult = { ok: true; instructions: Instruction[] } | { ok: false; error: unknown };

export interface OpenSessionResult {
  node: NodeRecord;
  /** Leases of the node given back (everything leased to it that is not in `keep`). */
  released: number;
}

export interface ExtendLeasesInput {
  nodeId: string;
  /** Only leases this session holds are extended. */
  sessionId: string;
  instructionIds: readonly string[];
  /** New lease length from now, capped at each instruction's expiry. (Default: the store's leaseMs) */
  leaseMs?: number;
}

export interface ReleaseInput {
  nodeId: string;
  /** Release only leases held by this owner: a stale stream can never release its replacement's leases. */
  owner?: string;
  /** Keep these leased (the node reports it is still working on them). */
  exceptIds?: readonly string[];
}

export interface NewReply {
  runId: string;
  /** The replying node; must be the instruction's destination. */
  nodeId: string;
  replyTo: string;
  payload?: Uint8Array;
  /** Set when the node's handler failed. */
  error?: ReplyError | null;
  /** Caller-chosen id (UUID): a retransmission with the same id is recognised. (Default: a new UUIDv7) */
  id?: string;
  /**
   * Store it already claimed: the caller holds the run's reply stream and delivers it itself (a claim the
   * caller then loses is recovered by the coordinator reading replies back, as for any claimed reply).
   */
  claimed?: boolean;
}

export type StoreReplyResult =
  | { ok: true; reply: Reply; duplicate: boolean }
  | { ok: false; error: FleetlinkError };

export interface ClaimRepliesInput {
  runId: string;
  /** Only replies to these instructions. (Default: any reply of the run) */
  instructionIds?: readonly string[];
  /** Most replies returned. (Default: 1000) */
  limit?: number;
}

export interface StoreStats {
  runs: Record<RunStatus, number>;
  nodes: Record<NodeStatus, number>;
  instructions: { pending: number; leased: number; done: number };
  replies: { pending: number; claimed: number };
}

/** A small JSON document with a version, for compare-and-set across replicas. */
export interface StoredRecord<T = unknown> {
  key: string;
  version: number;
  value: T;
  updatedAt: number;
}

export interface CleanupResult {
  instructions: number;
  replies: number;
  /** Finished runs removed (abandoned ones included). */
  runs: number;
  /** Runs this cleanup finished as abandoned (see `Store.cleanup`), whether or not it could remove them yet. */
  abandonedRuns: number;
  /** Nodes deleted: offline, unregistered or never approved, silent for longer than the cutoff. */
  nodes: number;
  /** Revoked, expired and used-up enrollment tokens. */
  enrollTokens: number;
}

/** Default and largest `limit` of the list reads (`listRuns`, `listInstructions`). */
export const LIST_LIMIT = { default: 100, max: 1000 } as const;

export interface ListRunsOptions {
  /** Only runs with this status. (Default: every status) */
  status?: RunStatus;
  /** Most runs returned, at most LIST_LIMIT.max (1000). (Default: 100) */
  limit?: number;
}

/** Validates a list read's `limit`; returns it or the default. */
export const checkListLimit = (v: unknown): number => {
  if (v === undefined) return LIST_LIMIT.default;
  checkPositiveInt("limit", v);
  if ((v as number) > LIST_LIMIT.max) throw invalid("limit", `must be at most ${LIST_LIMIT.max}`);
  return v as number;
};

export const checkRunStatus = (field: string, v: unknown): RunStatus => {
  if (typeof v !== "string" || !(v in RUN_TRANSITIONS))
    throw invalid(field, `must be one of ${Object.keys(RUN_TRANSITIONS).join(", ")}`);
  return v as RunStatus;
};

/** The reason of a run that `cleanup` finished because nothing had happened in it for longer than the cutoff. */
export const ABANDONED_REASON = "abandoned by cleanup";

export const checkCleanupAge = (v: unknown): number => {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
    throw invalid("olderThanMs", "must be an integer >= 0 (a cutoff in the future would delete live nodes)");
  return v;
};

/**
 * The state every hub replica shares. All operations are atomic; those that take a batch apply it in one
 * transaction. Every backend passes test/conformance.
 */
export interface Store {
  readonly backend: "memory" | "sqlite" | "postgres";
  readonly options: ResolvedStoreOptions;

  /**
   * The store's current time in ms, the one its leases, expiries and online windows are judged by (PostgreSQL
   * without an injected clock: the database's, so that replicas on skewed hosts agree).
   */
  now(): Promise<number>;
  createRun(opts?: { id?: string }): Promise<Run>;
  getRun(id: string): Promise<Run>;
  /** Compare-and-set: moves the run from `from` to `to` only if it is still `from`. */
  transitionRun(id: string, from: RunStatus, to: RunStatus, reason?: string): Promise<Run>;

  /**
   * Registers a node with a new id. The name must not be held by a live node, else NAME_TAKEN. A node holds its
   * name while it is online (status online and onlineUntil > now, whether or not a sweep has run), or while it is
   * registered (approved or pending) and younger than 2 × its heartbeat interval: it has not yet had the chance
   * to come online. Offline and unregistered nodes, and registered ones that never came online in that window,
   * do not hold it (a node that comes back later keeps its record, so two records may then share a name). The
   * check and the insert are atomic across racing replicas: of two registrations of one name, exactly one wins.
   */
  registerNode(input: NewNode): Promise<NodeRecord>;
  /** Approves a pending node (idempotent). NODE_NOT_FOUND if unknown, NODE_UNREGISTERED if unregistered. */
  approveNode(nodeId: string): Promise<NodeRecord>;
  getNode(id: string): Promise<NodeRecord>;
  listNodes(opts?: { status?: NodeStatus }): Promise<NodeRecord[]>;
  /**
   * Runs, newest first (by createdAt, then id: UUIDv7 ids sort by creation time), optionally of one status.
   * INVALID_ARGUMENT naming `status` or `limit` for a bad value.
   */
  listRuns(opts?: ListRunsOptions): Promise<Run[]>;
  /** A run's instructions, newest first (by push order). RUN_NOT_FOUND if the run does not exist. */
  listInstructions(runId: string, opts?: { limit?: number }): Promise<Instruction[]>;
  /**
   * Marks the node online until now + 2 × interval. Never revives an unregistered node. With `sessionId`, only
   * while that is the node's current session: a superseded one gets STREAM_CLOSED and nothing is written.
   */
  heartbeat(nodeId: string, heartbeatIntervalMs?: number, sessionId?: string): Promise<NodeRecord>;
  /**
   * Makes `sessionId` the node's current session (superseding any other) in one transaction: records a heartbeat
   * (with the new interval, if given), moves the leases of the instructions in `keep` still leased to this node
   * (by any owner) to the new session with a fresh lease, and releases every other lease of the node. A claim
   * for the superseded session that races this either commits first (its leases are released here) or finds the
   * session changed and claims nothing. Never revives an unregistered node (NODE_UNREGISTERED).
   */
  openSession(input: OpenSessionInput): Promise<OpenSessionResult>;
  /**
   * Records heartbeats of many nodes in one transaction (a replica batches what its streams received): each
   * node whose session is still the given one and that is not unregistered is marked online until the
   * heartbeat's time + 2 × interval (never earlier than it already was). Returns the onlineUntil of each
   * node renewed; a node left out was superseded by a newer session or unregistered, and nothing was written
   * for it. At most 10,000 items per call (INVALID_ARGUMENT naming `items` beyond).
   */
  renewSessions(items: readonly SessionRenewal[]): Promise<Map<string, number>>;
  /**
   * Nodes that have an instruction claimable now (pending, or leased with its lease run out; not expired, not
   * out of attempts), at most `limit` (default 10,000). A read: what a replica asks on another replica's
   * change or its periodic check, to claim for just those nodes instead of for every node it holds. Costs
   * what the live instructions cost, not what the connected nodes do.
   */
  claimableNodes(limit?: number): Promise<string[]>;
  /** The current session of each node (null: none yet). Unknown ids are left out. */
  getSessions(nodeIds: readonly string[]): Promise<Map<string, string | null>>;
  /**
   * Extends the leases the session holds on these instructions to now + leaseMs, never beyond an instruction's
   * expiry (the node reports progress while a handler runs). Returns the ids extended.
   */
  extendLeases(input: ExtendLeasesInput): Promise<string[]>;
  unregisterNode(nodeId: string): Promise<NodeRecord>;

  /**
   * Several pushes (of any runs) at once, each all or none and answered on its own, as `pushInstructions`
   * would answer it; one transaction for all of them where the backend can (a replica's group commit of
   * the pushes that arrived while its last one committed). A failing push fails only itself.
   */
  pushBatch(calls: readonly PushCall[]): Promise<PushResult[]>;
  /** Pushes instructions of one run, all or none. */
  pushInstructions(runId: string, items: readonly NewInstruction[]): Promise<Instruction[]>;
  /**
   * Leases up to `limit` claimable instructions per node, oldest first. Exactly once across racing replicas.
   * An instruction that has had its maxAttempts deliveries is never claimed again.
   */
  claimInstructions(input: ClaimInstructionsInput): Promise<Instruction[]>;
  /**
   * Gives leased instructions of a node back before their lease runs out (their stream closed before the node
   * got them). They become claimable at once; attempts are kept, so a release counts as a delivery: one
   * released after its last allowed attempt ends in DELIVERY_FAILED at the next sweep. Returns how many.
   */
  releaseInstructions(input: ReleaseInput): Promise<number>;
  /**
   * Withdraws instructions not yet delivered (still pending): they end with a CANCELLED error reply that is
   * already marked claimed. Delivered ones are left to finish. Returns the ids withdrawn.
   */
  withdrawInstructions(runId: string, ids: readonly string[]): Promise<string[]>;
  /** Stores replies, one result per input, in one transaction. Idempotent per instruction. */
  storeReplies(items: readonly NewReply[]): Promise<StoreReplyResult[]>;
  /** Hands out unclaimed replies of a run, each exactly once across racing replicas. */
  claimReplies(input: ClaimRepliesInput): Promise<Reply[]>;
  /** Reads instructions of a run by id (for delivery status). Unknown ids are left out. */
  getInstructions(runId: string, ids: readonly string[]): Promise<Instruction[]>;
  /** Reads the replies to these instructions, claimed or not (for a coordinator recovering after a reconnect). */
  getReplies(runId: string, instructionIds: readonly string[]): Promise<Reply[]>;
  /**
   * Calls `onChange` soon after a change commits, so hub replicas wake up without polling each other:
   * `"local"` for changes made through this handle, `"remote"` for other handles and processes (SQLite:
   * `PRAGMA data_version`; PostgreSQL: a coalesced `NOTIFY` sent after commit). Returns a stop function.
   */
  watch(onChange: (source: "local" | "remote") => void): () => void;
  /**
   * Ends every instruction that can no longer be answered with exactly one error reply
   * (NODE_UNAVAILABLE, DELIVERY_FAILED, MESSAGE_EXPIRED) and marks silent nodes offline.
   * Returns how many error replies it made. Safe to run on every replica at once.
   */
  sweep(): Promise<number>;
  getRecord<T = unknown>(key: string): Promise<StoredRecord<T> | null>;
  /** Records whose key starts with `prefix`, by key. */
  listRecords<T = unknown>(prefix: string): Promise<StoredRecord<T>[]>;
  /**
   * Compare-and-set: writes `value` if the record's version is `expectedVersion` (null: it must not exist yet).
   * Of two replicas racing from the same version exactly one wins; the other gets STATUS_CONFLICT.
   */
  putRecord<T = unknown>(key: string, value: T, expectedVersion: number | null): Promise<StoredRecord<T>>;
  /** Creates an enrollment token with a new id. */
  createEnrollToken(input: NewEnrollToken): Promise<EnrollTokenRecord>;
  /** Every enrollment token, newest first. */
  listEnrollTokens(): Promise<EnrollTokenRecord[]>;
  /** Revokes a token (idempotent); TOKEN_NOT_FOUND if unknown. */
  revokeEnrollToken(id: string): Promise<EnrollTokenRecord>;
  /**
   * Takes one use of a token: checks the secret's hash, that it is not revoked, not expired (expiresAt > now) and
   * not used up, and counts the use, in one atomic step (a token's last use goes to exactly one of racing
   * replicas). Otherwise UNAUTHORIZED saying why; an unknown id, a malformed one or a wrong hash all read
   * "unknown enrollment token or wrong secret", so a wrong secret learns nothing about the token.
   */
  useEnrollToken(id: string, secretHash: string): Promise<EnrollTokenRecord>;
  /**
   * Housekeeping, for everything older than the cutoff (now - olderThanMs), in one transaction:
   * - abandoned runs: a run not finished, with no live (not ended) instruction, whose last activity (its
   *   updated_at, its newest instruction's and newest reply's created_at) is older than the cutoff, is finished
   *   with reason ABANDONED_REASON (compare-and-set, like transitionRun; of racing replicas one finishes it);
   * - deletes ended instructions whose reply was claimed (and those replies), then finished runs with nothing
   *   left (those just abandoned included; one with an unclaimed reply stays finished until it is claimed);
   * - deletes nodes that are offline (whether or not a sweep has marked them), unregistered, or never approved,
   *   whose last sign of life (onlineUntil, or createdAt if they never came online) is older than the cutoff and
   *   that hold no live instruction. Their credentials stop working; a registered, approved node that has not
   *   come online yet is kept. A node whose heartbeat or push commits first is kept, whatever the race.
   * - deletes enrollment tokens that can no longer be used (revoked, expired, or used up at their last use).
   * Safe to run on every replica at once: each row is counted by the replica that changed it.
   */
  cleanup(olderThanMs: number): Promise<CleanupResult>;
  stats(): Promise<StoreStats>;
  close(): Promise<void>;
}

export const storeReply = async (
  store: Store,
  item: NewReply,
): Promise<{ reply: Reply; duplicate: boolean }> => {
  const [r] = await store.storeReplies([item]);
  if (!r!.ok) throw r!.error;
  return r!;
};

// ---- validation shared by every backend: bad input raises before anything is written ----

export const checkId = (field: string, v: unknown): string => {
  if (!isId(v)) throw invalid(field, "must be a UUID");
  return v;
};

export const checkIds = (field: string, v: readonly unknown[]): void => {
  for (const [i, id] of v.entries()) checkId(`${field}[${i}]`, id);
};

export const checkPositiveInt = (field: string, v: unknown): number => {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0)
    throw invalid(field, "must be an integer > 0");
  return v;
};

export const checkAttempts = (field: string, v: unknown): number => {
  checkPositiveInt(field, v);
  if ((v as number) > MAX_ATTEMPTS) throw invalid(field, `must be at most ${MAX_ATTEMPTS}`);
  return v as number;
};

export const checkName = (field: string, v: unknown, max = 200): string => {
  if (typeof v !== "string" || v.length === 0 || v.length > max)
    throw invalid(field, `must be a non-empty string of at most ${max} characters`);
  return v;
};

export const checkPayload = (field: string, v: unknown, max: number): Uint8Array => {
  if (v === undefined) return new Uint8Array(0);
  if (!(v instanceof Uint8Array)) throw invalid(field, "must be bytes (Uint8Array)");
  if (v.byteLength > max)
    throw new FleetlinkError(
      "PAYLOAD_TOO_LARGE",
      `${field}: ${v.byteLength} bytes exceeds the limit of ${max}`,
      {
        field,
      },
    );
  return v;
};

export const checkTransition = (from: RunStatus, to: RunStatus): void => {
  if (!(from in RUN_TRANSITIONS)) throw invalid("from", `unknown status ${String(from)}`);
  if (!(to in RUN_TRANSITIONS)) throw invalid("to", `unknown status ${String(to)}`);
  if (!RUN_TRANSITIONS[from].includes(to))
    throw new FleetlinkError("INVALID_TRANSITION", `a run cannot go from ${from} to ${to}`, { field: "to" });
};

export const checkRelease = (input: ReleaseInput): void => {
  checkId("nodeId", input.nodeId);
  if (input.owner !== undefined) checkName("owner", input.owner);
  if (input.exceptIds) checkIds("exceptIds", input.exceptIds);
};

/**
 * Validates a claim; returns the sessions to claim for (first one per node), or null for a claim by nodeIds.
 */
export const checkClaim = (input: ClaimInstructionsInput): SessionRef[] | null => {
  if (input.owner !== undefined) checkName("owner", input.owner);
  checkPositiveInt("limit", input.limit);
  if (input.leaseMs !== undefined) checkPositiveInt("leaseMs", input.leaseMs);
  if (input.sessions !== undefined) {
    if (input.nodeIds !== undefined) throw invalid("sessions", "give either nodeIds or sessions, not both");
    if (input.owner !== undefined)
      throw invalid("owner", "not allowed with sessions (the session holds the lease)");
    if (!Array.isArray(input.sessions)) throw invalid("sessions", "must be an array");
    const seen = new Map<string, SessionRef>();
    input.sessions.forEach((s, i) => {
      checkId(`sessions[${i}].nodeId`, s?.nodeId);
      checkName(`sessions[${i}].sessionId`, s.sessionId);
      if (!seen.has(s.nodeId)) seen.set(s.nodeId, { nodeId: s.nodeId, sessionId: s.sessionId });
    });
    return [...seen.values()];
  }
  if (!Array.isArray(input.nodeIds)) throw invalid("nodeIds", "must be an array");
  checkIds("nodeIds", input.nodeIds);
  return null;
};

export const checkOpenSession = (input: OpenSessionInput): void => {
  checkId("nodeId", input.nodeId);
  checkName("sessionId", input.sessionId);
  if (input.heartbeatIntervalMs !== undefined)
    checkPositiveInt("heartbeatIntervalMs", input.heartbeatIntervalMs);
  if (input.keep !== undefined) {
    if (!Array.isArray(input.keep)) throw invalid("keep", "must be an array");
    checkIds("keep", input.keep);
  }
};

/** Most heartbeats one `renewSessions` call records. */
export const MAX_RENEWALS = 10_000;

export const checkRenewals = (items: readonly SessionRenewal[]): void => {
  if (!Array.isArray(items)) throw invalid("items", "must be an array");
  if (items.length > MAX_RENEWALS) throw invalid("items", `at most ${MAX_RENEWALS} per call`);
  items.forEach((r, i) => {
    checkId(`items[${i}].nodeId`, r.nodeId);
    checkName(`items[${i}].sessionId`, r.sessionId);
    if (r.heartbeatIntervalMs !== undefined)
      checkPositiveInt(`items[${i}].heartbeatIntervalMs`, r.heartbeatIntervalMs);
    if (!Number.isSafeInteger(r.ageMs) || r.ageMs < 0)
      throw invalid(`items[${i}].ageMs`, "must be an integer ≥ 0");
  });
};

export const checkExtendLeases = (input: ExtendLeasesInput): void => {
  checkId("nodeId", input.nodeId);
  checkName("sessionId", input.sessionId);
  if (!Array.isArray(input.instructionIds)) throw invalid("instructionIds", "must be an array");
  checkIds("instructionIds", input.instructionIds);
  if (input.leaseMs !== undefined) checkPositiveInt("leaseMs", input.leaseMs);
};

/** The error for a stream whose session was superseded by a newer one of the same node. */
export const sessionSuperseded = (nodeId: string, sessionId: string): FleetlinkError =>
  new FleetlinkError(
    "STREAM_CLOSED",
    `session superseded: ${sessionId} is no longer node ${nodeId}'s session`,
  );

/** Validates the shape of a batch of instructions (not the references, which need the store). */
export const checkInstructions = (items: readonly NewInstruction[], o: ResolvedStoreOptions): void => {
  if (!Array.isArray(items) || items.length === 0) throw invalid("items", "must be a non-empty array");
  items.forEach((it, i) => {
    const f = `items[${i}]`;
    checkId(`${f}.dst`, it.dst);
    checkName(`${f}.method`, it.method);
    checkPositiveInt(`${f}.ttlMs`, it.ttlMs);
    if (it.ttlMs > MAX_TTL_MS) throw invalid(`${f}.ttlMs`, `must be at most ${MAX_TTL_MS} (30 days)`);
    checkPayload(`${f}.payload`, it.payload, o.maxPayloadBytes);
    if (it.maxAttempts !== undefined) checkAttempts(`${f}.maxAttempts`, it.maxAttempts);
    if (it.id !== undefined) checkId(`${f}.id`, it.id);
    if (it.groupId != null) checkName(`${f}.groupId`, it.groupId);
    if (it.src !== undefined) checkName(`${f}.src`, it.src);
    if (it.leaseTo !== undefined) checkName(`${f}.leaseTo`, it.leaseTo);
  });
};

export const checkReply = (r: NewReply, f: string, o: ResolvedStoreOptions): void => {
  checkId(`${f}.runId`, r.runId);
  checkId(`${f}.nodeId`, r.nodeId);
  checkId(`${f}.replyTo`, r.replyTo);
  if (r.id !== undefined) checkId(`${f}.id`, r.id);
  checkPayload(`${f}.payload`, r.payload, o.maxPayloadBytes);
  if (r.error != null) {
    checkName(`${f}.error.code`, r.error.code);
    if (typeof r.error.message !== "string") throw invalid(`${f}.error.message`, "must be a string");
    if (r.error.message.length > MAX_STORED_ERROR_MESSAGE_CHARS)
      throw invalid(`${f}.error.message`, `must be at most ${MAX_STORED_ERROR_MESSAGE_CHARS} characters`);
  }
};

export const checkNewEnrollToken = (t: NewEnrollToken): void => {
  checkName("secretHash", t.secretHash, 500);
  if (t.label != null) checkName("label", t.label);
  if (t.expiresAt != null && !Number.isSafeInteger(t.expiresAt))
    throw invalid("expiresAt", "must be a time in ms since the epoch, or null");
  if (t.uses != null) checkPositiveInt("uses", t.uses);
};

/** Why a token could not be used, given its current state (undefined: no such token). */
export const enrollRefusal = (
  t: EnrollTokenRecord | undefined,
  secretHash: string,
  now: number,
): FleetlinkError => {
  const why =
    !t || t.secretHash !== secretHash
      ? "unknown enrollment token or wrong secret"
      : t.revoked
        ? "enrollment token revoked"
        : t.expiresAt !== null && t.expiresAt <= now
          ? "enrollment token expired"
          : t.uses !== null && t.used >= t.uses
            ? `enrollment token used up (${t.used} of ${t.uses} uses)`
            : "enrollment token refused";
  return new FleetlinkError("UNAUTHORIZED", why);
};

/** The text of the error reply made for an instruction that ended without one. */
export const OUTCOME_TEXT = {
  FLEETLINK_E_NODE_UNAVAILABLE: "node missed its heartbeat window or was unregistered before replying",
  FLEETLINK_E_DELIVERY_FAILED: "lease expired the maximum number of times without a reply",
  FLEETLINK_E_MESSAGE_EXPIRED: "TTL passed without a reply",
  FLEETLINK_E_CANCELLED: "withdrawn before delivery",
} as const;
export type OutcomeCode = keyof typeof OUTCOME_TEXT;

/** Why a reply could not be stored, once the atomic store found nothing to answer. Shared by every backend. */
export const diagnoseReply = (
  r: NewReply,
  ins: { runId: string; dst: string; expiresAt: number } | undefined,
  existing: Reply | undefined,
  idTaken: boolean,
  now: number,
): StoreReplyResult => {
  if (idTaken && existing?.id !== r.id)
    return { ok: false, error: invalid("id", `reply id ${r.id} is already used by another reply`) };
  if (!ins)
    return { ok: false, error: new FleetlinkError("INSTRUCTION_NOT_FOUND", `no instruction ${r.replyTo}`) };
  if (ins.dst !== r.nodeId)
    return {
      ok: false,
      error: new FleetlinkError(
        "NOT_ADDRESSEE",
        `instruction ${r.replyTo} is not addressed to node ${r.nodeId}`,
      ),
    };
  if (ins.runId !== r.runId)
    return {
      ok: false,
      error: new FleetlinkError("RUN_MISMATCH", `instruction ${r.replyTo} belongs to run ${ins.runId}`),
    };
  if (existing) {
    if (existing.error && existing.error.code in OUTCOME_TEXT) {
      // A definite refusal, so that the node drops the reply: it can never be stored, however often it is sent
      // (NODE_UNAVAILABLE and DELIVERY_FAILED are indefinite codes, which would make it resend forever).
      const kind =
        existing.error.code === "FLEETLINK_E_CANCELLED"
          ? "CANCELLED"
          : existing.error.code === "FLEETLINK_E_MESSAGE_EXPIRED"
            ? "MESSAGE_EXPIRED"
            : "INSTRUCTION_ENDED";
      return {
        ok: false,
        error: new FleetlinkError(
          kind,
          `instruction ${r.replyTo} already ended: ${existing.error.code}: ${existing.error.message}`,
        ),
      };
    }
    // A retransmission, or a second run of the handler after redelivery: the first reply stands, both are acked.
    return { ok: true, reply: existing, duplicate: true };
  }
  if (ins.expiresAt <= now)
    return { ok: false, error: new FleetlinkError("MESSAGE_EXPIRED", `instruction ${r.replyTo} expired`) };
  return {
    ok: false,
    error: new FleetlinkError("INSTRUCTION_NOT_FOUND", `instruction ${r.replyTo} is not live`),
  };
};
