import type { Instruction, NodeRecord, Reply, Role, Run } from "../protocol/types.ts";
import type { AuditEntry, EnrollTokenRecord, PrincipalRecord, StoredRecord } from "./store.ts";

/** Row shapes shared by the SQL backends (same column names in SQLite and PostgreSQL). */
export type Row = Record<string, unknown>;

export const num = (v: unknown): number => (typeof v === "number" ? v : Number(v));
export const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : num(v));
/** A BLOB/bytea column as a Uint8Array view; an absent one (NULL, an outer join's miss) as empty bytes. */
export const bytes = (v: unknown): Uint8Array => {
  if (v === null || v === undefined) return new Uint8Array(0);
  const b = v as Uint8Array;
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
};

export const toRun = (r: Row): Run => ({
  id: r.id as string,
  tenant: r.tenant as string,
  status: r.status as Run["status"],
  reason: (r.reason as string | null) ?? null,
  createdAt: num(r.created_at),
  updatedAt: num(r.updated_at),
});

export const toNode = (r: Row): NodeRecord => ({
  id: r.id as string,
  tenant: r.tenant as string,
  name: r.name as string,
  status: r.status as NodeRecord["status"],
  heartbeatIntervalMs: num(r.heartbeat_interval_ms),
  onlineUntil: numOrNull(r.online_until),
  credentialHash: (r.credential_hash as string | null) ?? null,
  createdAt: num(r.created_at),
  approved: num(r.approved) === 1,
  agent:
    r.agent_name == null
      ? null
      : { name: r.agent_name as string, version: r.agent_version as string, protocol: num(r.protocol ?? 1) },
});

export const toEnrollToken = (r: Row): EnrollTokenRecord => ({
  id: r.id as string,
  tenant: r.tenant as string,
  label: (r.label as string | null) ?? null,
  secretHash: r.secret_hash as string,
  createdAt: num(r.created_at),
  expiresAt: numOrNull(r.expires_at),
  uses: numOrNull(r.uses),
  used: num(r.used),
  revoked: r.revoked_at !== null && r.revoked_at !== undefined,
});

export const toInstruction = (r: Row): Instruction => ({
  id: r.id as string,
  runId: r.run_id as string,
  src: r.src as string,
  dst: r.dst as string,
  groupId: (r.group_id as string | null) ?? null,
  method: r.method as string,
  payload: bytes(r.payload),
  createdAt: num(r.created_at),
  ttlMs: num(r.ttl_ms),
  expiresAt: num(r.expires_at),
  state: r.state as Instruction["state"],
  attempts: num(r.attempts),
  maxAttempts: num(r.max_attempts),
  leaseUntil: numOrNull(r.lease_until),
  leaseOwner: (r.lease_owner as string | null) ?? null,
  holdWhileOffline: Boolean(r.hold_offline),
  traceparent: (r.traceparent as string | null) ?? null,
});

export const toReply = (r: Row): Reply => ({
  id: r.id as string,
  runId: r.run_id as string,
  src: r.src as string,
  dst: r.dst as string,
  replyTo: r.reply_to as string,
  groupId: (r.group_id as string | null) ?? null,
  method: r.method as string,
  payload: bytes(r.payload),
  createdAt: num(r.created_at),
  error: r.error_code ? { code: r.error_code as string, message: (r.error_message as string) ?? "" } : null,
  traceparent: (r.traceparent as string | null) ?? null,
});

export const bySeq = (a: Row, b: Row): number => num(a.seq) - num(b.seq);

export const emptyStats = () => ({
  runs: { pending: 0, running: 0, finished: 0 },
  nodes: { registered: 0, online: 0, offline: 0, unregistered: 0 },
  instructions: { pending: 0, leased: 0, done: 0 },
  replies: { pending: 0, claimed: 0 },
});

export const toRecord = <T>(r: Row): StoredRecord<T> => ({
  key: r.key as string,
  version: num(r.version),
  value: JSON.parse(r.value as string) as T,
  updatedAt: num(r.updated_at),
});

export const toPrincipal = (r: Row): PrincipalRecord => ({
  id: r.id as string,
  label: (r.label as string | null) ?? null,
  role: r.role as Role,
  tenant: (r.tenant as string | null) ?? null,
  secretHash: r.secret_hash as string,
  createdAt: num(r.created_at),
  expiresAt: numOrNull(r.expires_at),
  revokedAt: numOrNull(r.revoked_at),
});

export const toAudit = (r: Row): AuditEntry => ({
  seq: num(r.seq),
  at: num(r.at),
  principal: r.principal as string,
  role: r.role as string,
  tenant: (r.tenant as string | null) ?? null,
  address: (r.address as string | null) ?? null,
  action: r.action as string,
  target: (r.target as string | null) ?? null,
  outcome: r.outcome as AuditEntry["outcome"],
  detail: r.detail == null ? null : (JSON.parse(r.detail as string) as Record<string, unknown>),
});
