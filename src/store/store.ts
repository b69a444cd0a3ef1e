import type { Instruction, NodeRecord, Reply, Run, RunStatus } from "../protocol/types.ts";
import type {
  ActivityCounters,
  AuditEntry,
  BeginBlobUploadInput,
  BeginBlobUploadResult,
  BlobReader,
  BlobRecord,
  BlobUpload,
  CallInstructionsOptions,
  Cancellation,
  ClaimInstructionsInput,
  ClaimRepliesInput,
  CleanupResult,
  CollectBlobsInput,
  CollectBlobsResult,
  EnrollTokenRecord,
  ExtendLeasesInput,
  InstructionOutcome,
  LeaveSessionInput,
  LeaveSessionResult,
  ListAuditOptions,
  ListNodesOptions,
  ListRunsOptions,
  NewAuditEntry,
  NewEnrollToken,
  NewInstruction,
  NewNode,
  NewPrincipal,
  NewReply,
  NodeInstructionsOptions,
  OpenSessionInput,
  OpenSessionResult,
  PrincipalRecord,
  PushCall,
  PushResult,
  RecentFailure,
  RecentFailuresOptions,
  ReleaseInput,
  ResolvedStoreOptions,
  SessionRenewal,
  StoredRecord,
  StoreReplyResult,
  StoreStats,
} from "./types.ts";

// Callers import the store's types and checks from here, as before they had files of their own.
export * from "./checks.ts";
export * from "./types.ts";

/**
 * The state every hub replica shares. All operations are atomic; those that take a batch apply it in one
 * transaction. Every backend passes test/conformance.
 */
/**
 * What another replica's change concerns, when it says (PostgreSQL pushes and replies, in their NOTIFY): pending
 * instructions for `nodes`, replies nobody has claimed of `runs`. A replica then claims for those nodes and reads
 * those runs' replies, without a scan; it reads the cancellation log and checks fencing only for changes that do
 * not say.
 */
export interface Change {
  nodes?: readonly string[];
  runs?: readonly string[];
}

export interface WithdrawOptions {
  /** Leave the CANCELLED replies for the run's coordinator to claim, rather than mark them claimed. (Default: false) */
  deliver?: boolean;
}

export interface Store {
  readonly backend: "sqlite" | "postgres";
  readonly options: ResolvedStoreOptions;

  /**
   * The store's current time in ms, the one its leases, expiries and online windows are judged by (PostgreSQL
   * without an injected clock: the database's, so that replicas on skewed hosts agree).
   */
  now(): Promise<number>;
  /**
   * Creates a run of `tenant` (default DEFAULT_TENANT; INVALID_ARGUMENT naming `tenant` if not a tenant name).
   * Its instructions only reach nodes of its tenant.
   */
  createRun(opts?: { id?: string; tenant?: string }): Promise<Run>;
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
   * Names are per tenant: a live node of another tenant never holds a name (so a tenant learns nothing of
   * another's nodes from NAME_TAKEN). The node belongs to `input.tenant` (default DEFAULT_TENANT).
   */
  registerNode(input: NewNode): Promise<NodeRecord>;
  /** Approves a pending node (idempotent). NODE_NOT_FOUND if unknown, NODE_UNREGISTERED if unregistered. */
  approveNode(nodeId: string): Promise<NodeRecord>;
  getNode(id: string): Promise<NodeRecord>;
  /** Nodes by id, optionally of one status and/or one tenant (INVALID_ARGUMENT naming `tenant` if malformed). */
  listNodes(opts?: ListNodesOptions): Promise<NodeRecord[]>;
  /**
   * Runs, newest first (by createdAt, then id: UUIDv7 ids sort by creation time), optionally of one status
   * and/or one tenant. INVALID_ARGUMENT naming `status`, `limit` or `tenant` for a bad value.
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
   * A node leaves gracefully, in one transaction: if `sessionId` is still its current session, the node is
   * marked offline now (its online window ends now, so the sweep ends its instructions NODE_UNAVAILABLE at
   * once instead of after two heartbeat intervals), the session is cleared (a late heartbeat of it writes
   * nothing) and every lease of the node is given back. Otherwise nothing changes (`left: false`). A later
   * `openSession` brings the node online again. NODE_NOT_FOUND for an unknown node.
   */
  leaveSession(input: LeaveSessionInput): Promise<LeaveSessionResult>;
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
  /**
   * Pushes instructions of one run, all or none. A `dst` that is a node of another tenant than the run's fails
   * exactly like an unknown node (NODE_NOT_FOUND naming `items[i].dst`): a run never learns of, or reaches, a
   * node of another tenant. Each blob a payload references must be one the run may
   * reference (uploaded to it, or in a message of it), else BLOB_NOT_FOUND naming the field (`items[i].payload.x`).
   */
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
   * Withdraws instructions that have not ended, delivered or not: each ends with a CANCELLED error reply, and a
   * late reply of its node is refused (CANCELLED, definite). The reply is marked claimed when the withdrawing
   * coordinator has stopped waiting (its own cancel); with `deliver` it is left for the run's coordinator to
   * claim, so a coordinator still waiting hears the withdrawal (another principal's withdraw, e.g. the dashboard). A delivered one
   * (leased) is also written to the cancellation log, so its node is told to stop. A reply racing the withdrawal
   * either ends the instruction first (then it is not withdrawn) or is refused: never two replies. Returns the
   * ids withdrawn.
   */
  withdrawInstructions(runId: string, ids: readonly string[], opts?: WithdrawOptions): Promise<string[]>;
  /**
   * Stores replies, one result per input, in one transaction. Idempotent per instruction. A reply whose payload
   * references a blob its node may not reference (or holds a malformed reference) is stored as an error reply
   * FLEETLINK_E_BLOB_NOT_FOUND naming the reference, payload empty.
   */
  storeReplies(items: readonly NewReply[]): Promise<StoreReplyResult[]>;
  /** Hands out unclaimed replies of a run, each exactly once across racing replicas. */
  claimReplies(input: ClaimRepliesInput): Promise<Reply[]>;
  /** Reads instructions of a run by id (for delivery status). Unknown ids are left out. */
  getInstructions(runId: string, ids: readonly string[]): Promise<Instruction[]>;
  /** Reads the replies to these instructions, claimed or not (for a coordinator recovering after a reconnect). */
  getReplies(runId: string, instructionIds: readonly string[]): Promise<Reply[]>;
  /**
   * Calls `onChange` soon after a change commits, so hub replicas wake up without polling each other. A remote
   * change may say what it concerns (`change`; PostgreSQL pushes and replies); without it, it may concern anything:
   * `"local"` for changes made through this handle, `"remote"` for other handles and processes (SQLite:
   * `PRAGMA data_version`; PostgreSQL: a coalesced `NOTIFY` sent after commit). Returns a stop function.
   */
  watch(onChange: (source: "local" | "remote", change?: Change) => void): () => void;
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
  /** Creates an enrollment token with a new id, for nodes of `input.tenant` (default DEFAULT_TENANT). */
  createEnrollToken(input: NewEnrollToken): Promise<EnrollTokenRecord>;
  /** Every enrollment token (of one tenant, if given), newest first. */
  listEnrollTokens(opts?: { tenant?: string }): Promise<EnrollTokenRecord[]>;
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
   * Checks a token as useEnrollToken would (the same UNAUTHORIZED refusals) without taking a use: a read. The
   * hub's access hook uses it, so an unknown or spent enrollment token is 401 on every route, not 403.
   */
  checkEnrollToken(id: string, secretHash: string): Promise<EnrollTokenRecord>;
  /**
   * Stores a principal (a credential of a person or service) with a new id. INVALID_ARGUMENT naming `role`,
   * `tenant`, `label`, `secretHash` or `expiresAt` for a bad value.
   */
  createPrincipal(input: NewPrincipal): Promise<PrincipalRecord>;
  /**
   * Principals, newest first; with `tenant`, only those scoped to exactly that tenant (unscoped ones, tenant
   * null, are left out).
   */
  listPrincipals(opts?: { tenant?: string }): Promise<PrincipalRecord[]>;
  /**
   * Revokes a principal (idempotent: a second revoke keeps the first time). TOKEN_NOT_FOUND naming `id` if
   * unknown. Every replica refuses it from the commit on: authenticatePrincipal reads the row each time.
   */
  revokePrincipal(id: string): Promise<PrincipalRecord>;
  /**
   * Checks a presented credential: the id exists and its secret hash matches, it is not revoked and not expired
   * (expiresAt > now, store clock). Else UNAUTHORIZED: "unknown token or wrong secret" for an unknown or
   * malformed id or a wrong hash (a wrong secret learns nothing), "token revoked" / "token expired" only once the
   * hash matched. A read: nothing is written.
   */
  authenticatePrincipal(id: string, secretHash: string): Promise<PrincipalRecord>;
  /**
   * Appends entries to the audit log in one transaction, in order (each gets the next seq and the store's time).
   * At most MAX_AUDIT_BATCH (1000) per call; INVALID_ARGUMENT naming the field (`entries[i].detail` for a detail
   * over MAX_AUDIT_DETAIL_BYTES serialized) and nothing appended for a bad entry.
   */
  appendAudit(entries: readonly NewAuditEntry[]): Promise<void>;
  /**
   * The audit log, newest first (seq descending), filtered, at most `limit` (1..1000, default 100) entries.
   * `nextBeforeSeq` is the `beforeSeq` of the next (older) page, null when this page is the last.
   */
  listAudit(opts?: ListAuditOptions): Promise<{ entries: AuditEntry[]; nextBeforeSeq: number | null }>;
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
   * - deletes enrollment tokens that can no longer be used (revoked, expired, or used up at their last use);
   * - deletes principals revoked or expired before the cutoff;
   * - keeps the audit log: it is history, and the operator decides how long to keep it (nothing deletes it);
   * - deletes the blob references of the runs it deletes, and cancellation-log entries older than 10 minutes
   *   (whatever the cutoff: the log is short-lived).
   * Safe to run on every replica at once: each row is counted by the replica that changed it.
   */
  cleanup(olderThanMs: number): Promise<CleanupResult>;
  stats(): Promise<StoreStats>;

  // Dashboard reads (docs/dashboard.md): bounded (a LIMIT on an index, or a range of the newest 50,000 rows by
  // primary key), payloads cut to a preview.

  /**
   * One call's instructions (those with this groupId, or the instruction with this id if it has no group), in
   * push order, each with its reply's time, error and payload preview. Empty for an unknown call; RUN_NOT_FOUND
   * for an unknown run.
   */
  callInstructions(
    runId: string,
    groupId: string,
    opts?: CallInstructionsOptions,
  ): Promise<InstructionOutcome[]>;
  /** A node's newest instructions across runs (among the store's newest 50,000), newest first, filtered; sizes only. */
  nodeInstructions(nodeId: string, opts?: NodeInstructionsOptions): Promise<InstructionOutcome[]>;
  /** Store-wide counters for the dashboard's rate charts (see ActivityCounters). */
  activityCounters(afterReplySeq: number | null): Promise<ActivityCounters>;
  /**
   * The newest error replies, newest first, among the store's newest 50,000 replies (a range of the primary
   * key): what failed lately, fleet-wide or of one tenant.
   */
  recentFailures(opts?: RecentFailuresOptions): Promise<RecentFailure[]>;

  // Blobs (docs/blobs.md). References are found in payloads by the store itself (every object `readBlobRef`
  // reads, escaped keys included): a push whose payload references a blob its run may not reference fails with
  // BLOB_NOT_FOUND naming the field (`items[i].payload.x`), one whose reference's size is not the blob's with
  // INVALID_ARGUMENT naming it; a reply that references a blob its node may not reference, or with a size that
  // is not the blob's, is stored as an error reply BLOB_NOT_FOUND instead (never silence). A reference is live
  // while its instruction has not ended, or while its reply is unclaimed. A payload that is not JSON holds no
  // references (payloads may be any bytes).

  /**
   * Starts (or resumes) an upload, or grants an existing blob at once (one round trip). Checked in this order:
   * sha256 and size (INVALID_ARGUMENT; PAYLOAD_TOO_LARGE field size over maxBlobBytes), the run (RUN_NOT_FOUND,
   * RUN_FINISHED), a node's right (FORBIDDEN field runId unless it is the destination of a live instruction of
   * the run). Then: the blob exists → `present` (the run may reference and read it; a node may reference it
   * only); an unfinished upload of the same blob by the same uploader (run and node) → that one; else the
   * run's quota (QUOTA_EXCEEDED field size) and a new upload at offset 0.
   */
  beginBlobUpload(input: BeginBlobUploadInput): Promise<BeginBlobUploadResult>;
  /** null if unknown (never started, completed, or abandoned). */
  getBlobUpload(id: string): Promise<BlobUpload | null>;
  /**
   * Records progress: `offset` bytes are durable. Touches the upload (it is not idle). INVALID_ARGUMENT (field
   * offset) past the upload's size; BLOB_NOT_FOUND (field upload) if the upload is unknown.
   * With `expectedOffset` it is a compare-and-set: it records only if the upload's current offset equals
   * `expectedOffset` and `offset` is not smaller, else CONFLICT (field `upload-offset`, the message names the
   * current offset) and nothing changes. A writer passes the offset it started from, so a writer that lost the
   * upload to another (a replica cut off while the client resumed on another) cannot move the offset back
   * under the new one. Without it the offset is set unconditionally.
   */
  recordBlobUpload(
    id: string,
    offset: number,
    backendState: string | null,
    expectedOffset?: number,
  ): Promise<BlobUpload>;
  /**
   * The upload's bytes are complete and verified: makes the blob visible and grants it to the uploader (the run;
   * the node may read it), and removes the upload, atomically. If the same blob became visible meanwhile (a
   * racing upload), that one is kept and `redundantObjectKey` names this upload's object for the caller to
   * delete. BLOB_NOT_FOUND (field `upload`) if the upload is unknown.
   */
  completeBlobUpload(id: string): Promise<{ blob: BlobRecord; redundantObjectKey: string | null }>;
  /** Removes an unfinished upload from the store (the caller aborts it in storage). Idempotent. */
  abortBlobUpload(id: string): Promise<BlobUpload | null>;
  /**
   * The blob, if `reader` may read it: a run, if any message or upload of the run references it; a node, if it
   * is the destination of an instruction referencing it or uploaded its bytes (a node that only claimed a
   * present blob, or referenced it in a reply, may not read it: both need no more than its hash). null
   * otherwise (the caller answers BLOB_NOT_FOUND, whether it is missing or forbidden).
   */
  readableBlob(sha256: string, reader: BlobReader): Promise<BlobRecord | null>;
  /**
   * Garbage collection, safe when replicas race: marks blobs found without a live reference, deletes those
   * still without one `graceMs` after they were marked (a reference added meanwhile unmarks; a push racing the
   * delete either commits first and keeps the blob, or finds it gone and fails BLOB_NOT_FOUND), and abandons
   * uploads idle for `uploadIdleMs`.
   */
  collectBlobs(input: CollectBlobsInput): Promise<CollectBlobsResult>;
  /** Blobs visible and their total bytes; unfinished uploads. */
  blobStats(): Promise<{ blobs: number; bytes: number; uploads: number }>;

  /**
   * The cancellation log after `afterSeq`, oldest first, at most `limit` (default 1000): instructions that ended
   * with an error outcome (withdrawn, expired, out of attempts, node unavailable) while leased to a node, so the
   * replica holding that node's stream can tell the node to stop. With `afterSeq` null, no items and the current
   * last seq (where a replica starts reading). Entries are kept at least 10 minutes (cleanup removes older ones).
   */
  cancellationsSince(
    afterSeq: number | null,
    limit?: number,
  ): Promise<{ seq: number; items: Cancellation[] }>;
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
