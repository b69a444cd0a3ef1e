/** Wire and store types shared by every layer. Times are milliseconds since the epoch. */

/** What a principal (a stored credential, see Store.createPrincipal) may do. */
export type Role = "admin" | "coordinator" | "reader" | "metrics";
export const ROLES: readonly Role[] = ["admin", "coordinator", "reader", "metrics"];
/** The tenant of everything created without naming one (and of every row older than tenants). */
export const DEFAULT_TENANT = "default";

export const RunStatus = { pending: "pending", running: "running", finished: "finished" } as const;
export type RunStatus = (typeof RunStatus)[keyof typeof RunStatus];

/** Allowed run status changes; anything else is INVALID_TRANSITION. */
export const RUN_TRANSITIONS: Readonly<Record<RunStatus, readonly RunStatus[]>> = {
  pending: ["running", "finished"],
  running: ["finished"],
  finished: [],
};

export interface Run {
  id: string;
  /** The tenant the run belongs to; its instructions only reach nodes of the same tenant. */
  tenant: string;
  status: RunStatus;
  /** Why the run finished (set with the `finished` status). */
  reason: string | null;
  createdAt: number;
  updatedAt: number;
}

export const NodeStatus = {
  registered: "registered",
  online: "online",
  offline: "offline",
  unregistered: "unregistered",
} as const;
export type NodeStatus = (typeof NodeStatus)[keyof typeof NodeStatus];

export interface NodeRecord {
  id: string;
  /** The tenant the node belongs to (the one of the enrollment token it enrolled with). */
  tenant: string;
  name: string;
  status: NodeStatus;
  heartbeatIntervalMs: number;
  /** Last heartbeat + 2 × interval; null before the first heartbeat. */
  onlineUntil: number | null;
  /** A hash of the node's credential, never the credential itself. */
  credentialHash: string | null;
  createdAt: number;
  /** False while the node waits for an admin to approve it (the hub lets no stream of it in). */
  approved: boolean;
  /** The software its last hello named, and the protocol version it spoke; null if it never named one. */
  agent: AgentInfo | null;
}

/** A node's software, as its hello named it (`agent`), with the protocol version of that hello. */
export interface AgentInfo {
  name: string;
  version: string;
  protocol: number;
}

export const InstructionState = { pending: "pending", leased: "leased", done: "done" } as const;
export type InstructionState = (typeof InstructionState)[keyof typeof InstructionState];

/** A message from the coordinator to one node. */
export interface Instruction {
  id: string;
  runId: string;
  src: string;
  dst: string;
  groupId: string | null;
  method: string;
  payload: Uint8Array;
  createdAt: number;
  ttlMs: number;
  expiresAt: number;
  state: InstructionState;
  /** Deliveries so far (a claim counts one). */
  attempts: number;
  maxAttempts: number;
  leaseUntil: number | null;
  /** The stream that holds the lease, when the claimer named one. */
  leaseOwner: string | null;
  /** Keep the instruction until its TTL while its node is offline, instead of failing it at once. */
  holdWhileOffline: boolean;
  /** The W3C trace context the call was pushed with (null or absent: none). */
  traceparent?: string | null;
}

export interface ReplyError {
  code: string;
  message: string;
}

/** A message from a node back to the coordinator: a handler's result or an error outcome. */
export interface Reply {
  id: string;
  runId: string;
  /** The node that replied (for error outcomes made by the hub: the instruction's destination). */
  src: string;
  dst: string;
  replyTo: string;
  groupId: string | null;
  method: string;
  payload: Uint8Array;
  createdAt: number;
  error: ReplyError | null;
  /** The W3C trace context the node replied with (null or absent: none). */
  traceparent?: string | null;
}
