import type { FastifyInstance, FastifyRequest } from "fastify";
import { FleetlinkError, isFleetlinkError } from "../../protocol/errors.ts";
import { isId } from "../../protocol/ids.ts";
import { DEFAULT_TENANT, type Role } from "../../protocol/types.ts";
import type { Store } from "../../store/store.ts";
import {
  bearer,
  hashCredential,
  parseEnrollToken,
  parseNodeToken,
  parsePrincipalToken,
  sameSecret,
} from "./auth.ts";
import { type Principal, maybePrincipalOf as principalOrNull, setPrincipal } from "./principal.ts";
import type { RunTenants } from "./tenancy.ts";

/**
 * What a route needs (its `config.access`); the one access hook (`registerAccess`) decides by it:
 * - `public`: anyone (health, readiness, the OpenAPI document, dashboard assets);
 * - `read`: reads (GETs, POST queries that only read, the dashboard feed): admin, coordinator, reader;
 * - `drive`: creating and driving runs (pushes, withdraws, reply claims, run status, blob uploads,
 *   checkpoints): admin, coordinator;
 * - `manage`: approving and unregistering nodes, enrollment and principal tokens, the audit log: admin;
 * - `metrics`: `GET /metrics`: admin, metrics;
 * - `enroll`: node enrollment, with an enrollment token only;
 * - `node`: the node's own routes (HTTP node API, node blobs), with its node credential, checked by the route.
 */
export type Access = "public" | "read" | "drive" | "manage" | "metrics" | "enroll" | "node";
export const ACCESS: readonly Access[] = ["public", "read", "drive", "manage", "metrics", "enroll", "node"];

/** The roles each role-checked access admits. */
export const ROLES_FOR: Readonly<Record<"read" | "drive" | "manage" | "metrics", readonly Role[]>> = {
  read: ["admin", "coordinator", "reader"],
  drive: ["admin", "coordinator"],
  manage: ["admin"],
  metrics: ["admin", "metrics"],
};

declare module "fastify" {
  interface FastifyContextConfig {
    /** What the route needs; a route without it makes the hub refuse to start. */
    access?: Access;
  }
}

/** Where audit entries go (src/hub/audit.ts's `Audit`, or a stand-in); never throws, never waits. */
export interface AuditSink {
  record(
    p: { id: string; role: string; tenant: string | null; address: string | null },
    action: string,
    target: string | null,
    outcome: "ok" | "refused",
    detail?: Record<string, unknown>,
  ): void;
}

export interface AccessContext {
  store: Store;
  /** The static admin token (unscoped admin, principal "admin-token"). */
  token: string;
  enrollToken: string | undefined;
  /** The static scrape-only token (role metrics, unscoped, principal "metrics-token"). */
  metricsToken?: string | undefined;
  /** Refused requests of known credentials are recorded here. */
  audit?: AuditSink;
}

const principal = (
  id: string,
  role: Principal["role"],
  tenant: string | null,
  address: string,
  label: string | null = null,
): Principal => ({ id, label, role, tenant, address });

/**
 * Who the `Authorization` header says the caller is, from the header alone plus at most one store read (a stored
 * principal, or a node credential presented where it does not belong). Unknown, wrong, expired or revoked: 401.
 * Stored enrollment tokens are checked (a read; their use is taken at enrollment): valid ones get 403 elsewhere.
 */
export const authenticate = async (
  ctx: AccessContext,
  authorization: string | string[] | undefined,
  address: string,
): Promise<Principal> => {
  const tok = bearer(authorization);
  if (sameSecret(tok, ctx.token)) return principal("admin-token", "admin", null, address);
  if (ctx.metricsToken !== undefined && sameSecret(tok, ctx.metricsToken))
    return principal("metrics-token", "metrics", null, address);
  if (ctx.enrollToken && sameSecret(tok, ctx.enrollToken))
    return principal("enroll-token", "enroll", DEFAULT_TENANT, address);
  const stored = parsePrincipalToken(tok);
  if (stored) {
    // No cache: a revocation is refused at once on every replica (one indexed read per request).
    const p = await ctx.store.authenticatePrincipal(stored.id, hashCredential(stored.secret));
    return principal(p.id, p.role, p.tenant, address, p.label);
  }
  const enroll = parseEnrollToken(tok);
  if (enroll) {
    // Checked, not used (the enrollment takes its use): an unknown, revoked, expired or spent token is 401 here,
    // so a made-up token neither reads as a credential (403) nor fills the audit log with refusals.
    const t = await ctx.store.checkEnrollToken(enroll.id, hashCredential(enroll.secret));
    return principal(`enroll-token:${t.id}`, "enroll", t.tenant, address);
  }
  const { nodeId, credential } = (() => {
    try {
      return parseNodeToken(tok);
    } catch {
      return { nodeId: "", credential: "" };
    }
  })();
  if (isId(nodeId)) {
    const node = await ctx.store.getNode(nodeId).catch((e: unknown) => {
      if (isFleetlinkError(e, "NODE_NOT_FOUND")) return null;
      throw e;
    });
    if (node?.credentialHash && sameSecret(hashCredential(credential), node.credentialHash))
      return principal(`node:${node.id}`, "node", node.tenant, address);
  }
  throw new FleetlinkError("UNAUTHORIZED", "unknown token or wrong secret");
};

const kindOf = (p: Principal): string =>
  p.role === "enroll"
    ? "is an enrollment token (it may only enroll nodes)"
    : p.role === "node"
      ? "is a node credential (it may only serve its own node)"
      : `has role ${p.role}`;

/** 403 naming what the route needs and what the caller has. */
export const forbidden = (need: Access, p: Principal): FleetlinkError => {
  if (need === "enroll")
    return new FleetlinkError(
      "FORBIDDEN",
      `needs an enrollment token; this token ${kindOf(p)}${p.id === "admin-token" ? " (the admin token cannot enroll nodes)" : ""}`,
    );
  const roles = need === "node" ? ["node"] : [...(ROLES_FOR[need as keyof typeof ROLES_FOR] ?? [])];
  const needs =
    roles.length === 1 ? `role ${roles[0]}` : `role ${roles.slice(0, -1).join(", ")} or ${roles.at(-1)}`;
  return new FleetlinkError("FORBIDDEN", `needs ${needs}; this token ${kindOf(p)}`);
};

/** Whether `p` may do what `need` asks (role only; tenants are the routes' business). */
export const allows = (need: Access, p: Principal): boolean => {
  if (need === "public") return true;
  if (need === "enroll") return p.role === "enroll";
  if (need === "node") return p.role === "node";
  return (ROLES_FOR[need] as readonly string[]).includes(p.role);
};

/** Authenticates and authorizes a request for `need`; the principal, or FleetlinkError 401/403. */
export const authorize = async (
  ctx: AccessContext,
  need: Access,
  authorization: string | string[] | undefined,
  address: string,
): Promise<Principal> => {
  const p = await authenticate(ctx, authorization, address).catch((e: unknown) => {
    // A spent, expired or revoked enrollment token used where it could never work: say what it is first, so the
    // fix is not "make a new enrollment token".
    if (need !== "enroll" && isFleetlinkError(e, "UNAUTHORIZED") && parseEnrollToken(bearer(authorization)))
      throw new FleetlinkError(
        "UNAUTHORIZED",
        `this is an enrollment token (it may only enroll nodes), and it is not usable either: ${e.message}`,
      );
    throw e;
  });
  if (!allows(need, p)) {
    ctx.audit?.record(p, "access.refused", null, "refused", { need });
    throw forbidden(need, p);
  }
  return p;
};

/** What a static enrollment token or a stored one asks (the stored one is checked and used in the handler). */
export type Enroller = { kind: "static" } | { kind: "stored"; id: string; secretHash: string };

export const enrollerOf = (req: FastifyRequest): Enroller => {
  const tok = bearer(req.headers.authorization);
  const stored = parseEnrollToken(tok);
  return stored
    ? { kind: "stored", id: stored.id, secretHash: hashCredential(stored.secret) }
    : { kind: "static" };
};

/**
 * The one access decision of the hub. Every route declares `config.access` (a route without one makes
 * `createHub` throw), and one `onRequest` hook authenticates and authorizes by it, before any body is read or
 * any parameter validated: a caller without the right credential learns nothing about schemas and costs no
 * parsing. After validation, a tenant-scoped caller's `:run` and `:node` must be of its tenant, else they read as
 * 404 (no existence leak). Node routes check their node credential themselves (the session handle, or
 * authenticateNode), so the hook only requires the header there.
 */
export const registerAccess = (app: FastifyInstance, ctx: AccessContext, runs: RunTenants): void => {
  const nodeGate = new NodeGate(ctx.store);
  app.addHook("onRoute", (route) => {
    const need = (route.config as { access?: unknown } | undefined)?.access;
    if (!ACCESS.includes(need as Access))
      throw new Error(
        `route ${String(route.method)} ${route.url} declares no access need (config.access: ${ACCESS.join(" | ")})`,
      );
  });
  app.addHook("onRequest", async (req) => {
    // No route matched: the not-found handler answers, whatever the credential.
    if (req.is404) return;
    const need = req.routeOptions.config.access as Access;
    if (need === "public") return;
    if (need === "node") {
      // The credential is checked before the body is read; the route then checks it against its session or
      // the node's record (status, approval), as before.
      await nodeGate.check(req.headers.authorization);
      return;
    }
    setPrincipal(req, await authorize(ctx, need, req.headers.authorization, req.ip));
  });
  app.addHook("preHandler", async (req) => {
    const p = principalOrNull(req);
    if (!p || p.tenant === null) return;
    const params = req.params as { run?: unknown; node?: unknown } | undefined;
    if (typeof params?.run === "string") await runs.check(p, params.run);
    if (typeof params?.node === "string") await runs.checkNode(p, params.node);
  });
};

/** Node credentials seen valid recently are not read again for this long, in ms. */
const NODE_GATE_TTL_MS = 30_000;
const NODE_GATE_MAX = 10_000;

/**
 * The gate of the node routes: a node credential must match its node's record before anything of the request is
 * parsed. A credential seen valid within NODE_GATE_TTL_MS is let through without a store read (a polling node
 * costs no extra read per request); this only decides whether the request is parsed at all: the route still
 * checks the credential against its session or the node's current record (unregistered, pending).
 */
class NodeGate {
  private readonly seen = new Map<string, number>();
  private readonly store: Store;
  constructor(store: Store) {
    this.store = store;
  }

  async check(authorization: string | string[] | undefined): Promise<void> {
    const { nodeId, credential } = parseNodeToken(bearer(authorization));
    const unknown = () => new FleetlinkError("UNAUTHORIZED", "unknown node or bad credential");
    if (!isId(nodeId)) throw unknown();
    const hash = hashCredential(credential);
    const key = `${nodeId}.${hash}`;
    const at = this.seen.get(key);
    if (at !== undefined && Date.now() - at < NODE_GATE_TTL_MS) return;
    const node = await this.store.getNode(nodeId).catch((e: unknown) => {
      if (isFleetlinkError(e, "NODE_NOT_FOUND")) return null;
      throw e;
    });
    if (!node?.credentialHash || !sameSecret(hash, node.credentialHash)) throw unknown();
    this.seen.delete(key);
    this.seen.set(key, Date.now());
    if (this.seen.size > NODE_GATE_MAX) this.seen.delete(this.seen.keys().next().value as string);
  }
}
