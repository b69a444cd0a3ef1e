// Validation shared by every backend (bad input raises before anything is written), and the explanations of a
// refusal that the SQL rules (rules.ts) decided.
import { FleetlinkError, invalid } from "../protocol/errors.ts";
import { isId } from "../protocol/ids.ts";
import { DEFAULT_MAX_PAYLOAD_BYTES, MAX_TTL_MS } from "../protocol/limits.ts";
import type { Reply, Role, RunStatus } from "../protocol/types.ts";
import { DEFAULT_TENANT, ROLES, RUN_TRANSITIONS } from "../protocol/types.ts";
import {
  type ClaimInstructionsInput,
  type Clock,
  type EnrollTokenRecord,
  type ExtendLeasesInput,
  LIST_LIMIT,
  type ListAuditOptions,
  MAX_ATTEMPTS,
  MAX_AUDIT_BATCH,
  MAX_AUDIT_DETAIL_BYTES,
  MAX_STORED_ERROR_MESSAGE_CHARS,
  type NewAuditEntry,
  type NewEnrollToken,
  type NewInstruction,
  type NewPrincipal,
  type NewReply,
  type OpenSessionInput,
  type ReleaseInput,
  type ResolvedStoreOptions,
  type SessionRef,
  type SessionRenewal,
  type StoreOptions,
  type StoreReplyResult,
} from "./types.ts";

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

export const checkCleanupAge = (v: unknown): number => {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
    throw invalid("olderThanMs", "must be an integer >= 0 (a cutoff in the future would delete live nodes)");
  return v;
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
  if (input.agent !== undefined) {
    checkName("agent.name", input.agent.name);
    checkName("agent.version", input.agent.version);
  }
  if (input.protocol !== undefined) checkPositiveInt("protocol", input.protocol);
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
  FLEETLINK_E_NODE_UNAVAILABLE:
    "node went offline (it left, missed its heartbeat window, or was unregistered) before replying",
  FLEETLINK_E_DELIVERY_FAILED: "lease expired the maximum number of times without a reply",
  FLEETLINK_E_MESSAGE_EXPIRED: "TTL passed without a reply",
  FLEETLINK_E_CANCELLED: "withdrawn before delivery",
} as const;
/** The CANCELLED text of an instruction withdrawn after it was delivered (its node was working on it). */
export const CANCELLED_DELIVERED = "withdrawn while the node worked on it (the node was told to stop)";
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

// ---- tenants, principals, audit ----

const TENANT = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** A tenant name: lowercase letters, digits, `_` and `-`, starting with a letter or digit, at most 63 characters. */
export const checkTenant = (field: string, v: unknown): string => {
  if (typeof v !== "string" || !TENANT.test(v))
    throw invalid(
      field,
      "must be a tenant name (a-z, 0-9, _ and -, starting with a letter or digit, 1-63 characters)",
    );
  return v;
};

/** An optional tenant: the default tenant when undefined. */
export const tenantOrDefault = (field: string, v: unknown): string =>
  v === undefined ? DEFAULT_TENANT : checkTenant(field, v);

/** An optional tenant filter: null (every tenant) when undefined. */
export const tenantFilter = (v: unknown): string | null =>
  v === undefined ? null : checkTenant("tenant", v);

export const checkRole = (field: string, v: unknown): Role => {
  if (typeof v !== "string" || !(ROLES as readonly string[]).includes(v))
    throw invalid(field, `must be one of ${ROLES.join(", ")}`);
  return v as Role;
};

const checkTime = (field: string, v: unknown): void => {
  if (v != null && !Number.isSafeInteger(v))
    throw invalid(field, "must be a time in ms since the epoch, or null");
};

export const checkNewPrincipal = (p: NewPrincipal): void => {
  if (p === null || typeof p !== "object") throw invalid("input", "must be an object");
  checkRole("role", p.role);
  if (p.tenant != null) checkTenant("tenant", p.tenant);
  if (p.label != null) checkName("label", p.label);
  checkName("secretHash", p.secretHash, 500);
  checkTime("expiresAt", p.expiresAt);
};

/** Why a principal was refused, given its current state (undefined: no such principal). */
export const principalRefusal = (
  p: { secretHash: string; revokedAt: number | null; expiresAt: number | null } | undefined,
  secretHash: string,
  now: number,
): FleetlinkError => {
  const why =
    !p || p.secretHash !== secretHash
      ? "unknown token or wrong secret"
      : p.revokedAt !== null
        ? "token revoked"
        : p.expiresAt !== null && p.expiresAt <= now
          ? "token expired"
          : "token refused";
  return new FleetlinkError("UNAUTHORIZED", why);
};

const optText = (field: string, v: unknown, max = 200): void => {
  if (v != null) checkName(field, v, max);
};

/**
 * Validates a batch of audit entries; returns each one's detail serialized (or null). A nullable field left
 * undefined is taken as null.
 */
export const checkAuditEntries = (entries: readonly NewAuditEntry[]): (string | null)[] => {
  if (!Array.isArray(entries)) throw invalid("entries", "must be an array");
  if (entries.length > MAX_AUDIT_BATCH) throw invalid("entries", `at most ${MAX_AUDIT_BATCH} per call`);
  return entries.map((e, i) => {
    const f = `entries[${i}]`;
    if (e === null || typeof e !== "object") throw invalid(f, "must be an object");
    checkName(`${f}.principal`, e.principal);
    checkName(`${f}.role`, e.role, 100);
    if (e.tenant != null) checkTenant(`${f}.tenant`, e.tenant);
    optText(`${f}.address`, e.address);
    checkName(`${f}.action`, e.action, 100);
    optText(`${f}.target`, e.target, 500);
    if (e.outcome !== "ok" && e.outcome !== "refused")
      throw invalid(`${f}.outcome`, 'must be "ok" or "refused"');
    if (e.detail == null) return null;
    if (typeof e.detail !== "object" || Array.isArray(e.detail))
      throw invalid(`${f}.detail`, "must be a JSON object or null");
    let json: string;
    try {
      json = JSON.stringify(e.detail);
    } catch (cause) {
      throw new FleetlinkError("INVALID_ARGUMENT", `${f}.detail: must be serializable as JSON`, {
        field: `${f}.detail`,
        cause,
      });
    }
    if (Buffer.byteLength(json) > MAX_AUDIT_DETAIL_BYTES)
      throw invalid(`${f}.detail`, `must be at most ${MAX_AUDIT_DETAIL_BYTES} bytes as JSON`);
    return json;
  });
};

const checkSeq = (field: string, v: unknown): number | null => {
  if (v === undefined) return null;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
    throw invalid(field, "must be an integer >= 0");
  return v;
};

export const checkListAudit = (o: ListAuditOptions) => ({
  tenant: tenantFilter(o.tenant),
  afterSeq: checkSeq("afterSeq", o.afterSeq),
  beforeSeq: checkSeq("beforeSeq", o.beforeSeq),
  limit: checkListLimit(o.limit),
  action: o.action === undefined ? null : checkName("action", o.action, 100),
  principal: o.principal === undefined ? null : checkName("principal", o.principal),
});
