// The store's option, input and result types and its constants (the interface itself is in store.ts).

import type { FleetlinkError } from "../protocol/errors.ts";
import { MAX_ERROR_MESSAGE_CHARS } from "../protocol/limits.ts";
import type {
  Instruction,
  NodeRecord,
  NodeStatus,
  Reply,
  ReplyError,
  Role,
  RunStatus,
} from "../protocol/types.ts";

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

export interface NewNode {
  /** Unique among live nodes (see `Store.registerNode`). */
  name: string;
  /** Expected heartbeat interval in ms; the node is online until last heartbeat + 2 × interval. */
  heartbeatIntervalMs: number;
  credentialHash?: string | null;
  /** False: the node waits for `approveNode` before the hub lets it in. (Default: true) */
  approved?: boolean;
  /** The tenant the node belongs to. (Default: DEFAULT_TENANT) */
  tenant?: string;
}

/** An enrollment token as stored: the secret itself is never kept, only its hash. */
export interface EnrollTokenRecord {
  id: string;
  /** The tenant of the nodes enrolled with it. */
  tenant: string;
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
  /** The tenant of the nodes enrolled with it. (Default: DEFAULT_TENANT) */
  tenant?: string;
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
  /** The node's software, as its hello named it: recorded on the node. (Default: none, recorded as null) */
  agent?: { name: string; version: string };
  /** The protocol version the node speaks, recorded on the node. (Default: 1) */
  protocol?: number;
}

export interface LeaveSessionInput {
  nodeId: string;
  /** The leaving session: nothing happens unless it is still the node's current one. */
  sessionId: string;
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

export interface LeaveSessionResult {
  /** Whether the session was the node's current one (and the node is now offline). */
  left: boolean;
  /** Leases of the node given back. */
  released: number;
}

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
  /** Revoked and expired principals. */
  principals: number;
}

/** Default and largest `limit` of the list reads (`listRuns`, `listInstructions`). */
export const LIST_LIMIT = { default: 100, max: 1000 } as const;

export interface ListRunsOptions {
  /** Only runs with this status. (Default: every status) */
  status?: RunStatus;
  /** Most runs returned, at most LIST_LIMIT.max (1000). (Default: 100) */
  limit?: number;
  /** Only runs of this tenant. (Default: every tenant) */
  tenant?: string;
}

/** Options of `Store.listNodes`. */
export interface ListNodesOptions {
  /** Only nodes with this status. (Default: every status) */
  status?: NodeStatus;
  /** Only nodes of this tenant. (Default: every tenant) */
  tenant?: string;
}

/** A stored credential of a person or service (see `Store.createPrincipal`): its secret is kept only as a hash. */
export interface PrincipalRecord {
  id: string;
  label: string | null;
  role: Role;
  /**
   * The one tenant it may see and act on; null: every tenant (only an unscoped admin may create such a
   * principal).
   */
  tenant: string | null;
  secretHash: string;
  createdAt: number;
  /** Refused from this time on (store clock); null: never expires. */
  expiresAt: number | null;
  /** When it was revoked; null: not revoked. */
  revokedAt: number | null;
}

export interface NewPrincipal {
  role: Role;
  /** (Default: null, every tenant) */
  tenant?: string | null;
  /** (Default: null) */
  label?: string | null;
  /** A hash of the principal's secret (the store compares hashes, it never sees the secret). */
  secretHash: string;
  /** (Default: null, never expires) */
  expiresAt?: number | null;
}

/** One line of the audit log: who did what, to what, when, and whether it was allowed. */
export interface AuditEntry {
  /** Position in the log (increasing, unique). */
  seq: number;
  /** When the store appended it (store clock, ms). */
  at: number;
  /** A principal id, or "admin-token" / "enroll-token" / "metrics-token" / "node:<id>". */
  principal: string;
  role: string;
  tenant: string | null;
  /** The caller's network address, when known. */
  address: string | null;
  /**
   * What was done, e.g. "node.enroll", "node.approve", "node.unregister", "token.create", "token.revoke",
   * "enroll-token.create", "enroll-token.revoke", "run.create", "run.status", "checkpoint.push".
   */
  action: string;
  /** The id acted on. */
  target: string | null;
  /** "refused": the caller was refused (401/403). */
  outcome: "ok" | "refused";
  /** Small JSON (at most MAX_AUDIT_DETAIL_BYTES serialized), or null. */
  detail: Record<string, unknown> | null;
}

export type NewAuditEntry = Omit<AuditEntry, "seq" | "at">;

export interface ListAuditOptions {
  /** Only entries of this tenant. (Default: every tenant) */
  tenant?: string;
  /** Only entries with seq > afterSeq. (Default: none) */
  afterSeq?: number;
  /** Only entries with seq < beforeSeq (the previous page's `nextBeforeSeq`). (Default: none) */
  beforeSeq?: number;
  /** Most entries returned, 1..LIST_LIMIT.max (1000). (Default: 100) */
  limit?: number;
  /** Only entries of this action. (Default: every action) */
  action?: string;
  /** Only entries of this principal. (Default: every principal) */
  principal?: string;
}

/** Largest audit `detail`, serialized as JSON, in bytes. */
export const MAX_AUDIT_DETAIL_BYTES = 4096;
/** Most entries one `appendAudit` call takes. */
export const MAX_AUDIT_BATCH = 1000;

/** The reason of a run that `cleanup` finished because nothing had happened in it for longer than the cutoff. */
export const ABANDONED_REASON = "abandoned by cleanup";

/** A blob the store knows: complete, verified, visible. Its bytes are in object storage under `objectKey`. */
export interface BlobRecord {
  sha256: string;
  size: number;
  /** Where the bytes are in the hub's blob storage (unique per upload, so deleting one never hits another). */
  objectKey: string;
  createdAt: number;
}

/** An upload not yet complete (resumable: `offset` bytes are durable in storage). */
export interface BlobUpload {
  id: string;
  sha256: string;
  size: number;
  runId: string;
  /** The uploading node; null for a coordinator's upload. */
  nodeId: string | null;
  objectKey: string;
  /** Bytes durable so far. */
  offset: number;
  /** The storage backend's own state of the upload (e.g. S3's upload id and parts), opaque to the store. */
  backendState: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface BeginBlobUploadInput {
  sha256: string;
  size: number;
  /** The run the blob is for: it counts against this run's quota and the run may reference it. */
  runId: string;
  /**
   * A node's upload (the node must be the destination of a not-ended instruction of `runId`, else FORBIDDEN);
   * null: the coordinator's.
   */
  nodeId: string | null;
  /** Id and object key for a new upload (chosen by the caller, unique); unused when one is resumed. */
  uploadId: string;
  objectKey: string;
  /** PAYLOAD_TOO_LARGE (field `size`, naming the limit) beyond. */
  maxBlobBytes: number;
  /** QUOTA_EXCEEDED (field `size`, naming the limit) when the run's distinct blobs plus its open uploads would pass it. */
  runQuotaBytes: number;
}

export type BeginBlobUploadResult =
  /**
   * The blob exists already: the run (and a coordinator) may now reference and read it; a node that sent no
   * bytes may reference it in its replies but not read it (it proved no possession of the bytes).
   */
  | { state: "present"; blob: BlobRecord }
  /** A new upload, or the unfinished one of the same blob by the same uploader, to resume at `upload.offset`. */
  | { state: "uploading"; upload: BlobUpload };

/** Who asks to read a blob: a run's coordinator, or a node. */
export type BlobReader = { runId: string } | { nodeId: string };

export interface CollectBlobsInput {
  /** A blob without live reference is deleted this long after it was first found so. */
  graceMs: number;
  /** An unfinished upload untouched this long is abandoned. */
  uploadIdleMs: number;
  /** Most blobs and uploads handled per call. (Default: 1000) */
  limit?: number;
}

export interface CollectBlobsResult {
  /** Blobs deleted from the store: the caller deletes their objects (nobody can reference them any more). */
  deleted: BlobRecord[];
  /** Uploads abandoned and removed from the store: the caller aborts them in storage. */
  abandoned: BlobUpload[];
}

/** An instruction that ended with an error outcome while a node held its lease (its handler may be running). */
export interface Cancellation {
  /** Position in the store's cancellation log (increasing). */
  seq: number;
  instructionId: string;
  nodeId: string;
  /** The error code it ended with (FLEETLINK_E_CANCELLED, …_MESSAGE_EXPIRED, …_DELIVERY_FAILED, …). */
  code: string;
}

/**
 * An instruction with its outcome, as the dashboard shows it: payloads cut to a preview (their full size
 * stated), and the reply's time and error if there is one.
 */
export interface InstructionOutcome {
  id: string;
  runId: string;
  dst: string;
  groupId: string | null;
  method: string;
  state: Instruction["state"];
  attempts: number;
  maxAttempts: number;
  createdAt: number;
  expiresAt: number;
  /** While leased: when the lease runs out. */
  leaseUntil: number | null;
  /** When it was first delivered (claimed, or pushed already leased); null: never, or pushed before schema 12. */
  deliveredAt: number | null;
  /** The payload's first bytes (at most the preview asked for). */
  payload: Uint8Array;
  payloadBytes: number;
  reply: {
    id: string;
    createdAt: number;
    error: ReplyError | null;
    payload: Uint8Array;
    payloadBytes: number;
  } | null;
}

/** An instruction's outcome, for filters: `pending` has no reply yet (delivered or not). */
export type Outcome = "ok" | "error" | "pending";

export interface NodeInstructionsOptions {
  /** (Default: LIST_LIMIT.default) */
  limit?: number;
  method?: string;
  runId?: string;
  outcome?: Outcome;
}

/** An error reply, as the dashboard's recent failures list shows it. */
export interface RecentFailure {
  /** The reply's position in the store (newer replies have larger ones). */
  seq: number;
  replyId: string;
  runId: string;
  /** The node the instruction was for. */
  nodeId: string;
  instructionId: string;
  /** The call it belongs to: its groupId, or the instruction's id if it has none. */
  callId: string;
  method: string;
  code: string;
  message: string;
  /** When the reply was stored (store clock). */
  at: number;
}

export interface RecentFailuresOptions {
  /** At most this many, 1 to 100. (Default: 10) */
  limit?: number;
  /** Only replies of this tenant's runs. (Default: every tenant) */
  tenant?: string;
}

export interface CallInstructionsOptions {
  /** Instructions read, at most LIST_LIMIT.max. (Default: LIST_LIMIT.max) */
  limit?: number;
  /** Payload bytes returned of each payload (instruction and reply), at most 65536. (Default: 4096) */
  previewBytes?: number;
}

/**
 * Store-wide counters for rates: the newest instruction and reply sequence numbers (they only grow, whoever
 * wrote the rows), and how many error replies have a sequence number in (afterReplySeq, replies].
 */
export interface ActivityCounters {
  instructions: number;
  replies: number;
  errors: number;
}
