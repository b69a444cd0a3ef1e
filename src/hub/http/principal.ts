import type { FastifyRequest } from "fastify";
import { FleetlinkError } from "../../protocol/errors.ts";
import type { Role } from "../../protocol/types.ts";

/**
 * Who made a request, as the global access hook (server.ts) established it from the `Authorization` header
 * before anything else of the request was read.
 * - `id`: a stored principal's id, or "admin-token" / "metrics-token" / "enroll-token" / "node:<nodeId>";
 * - `tenant`: null for an unscoped credential (every tenant), else the one tenant it may see and touch;
 * - `address`: the client address (for the audit log).
 */
export interface Principal {
  id: string;
  label: string | null;
  role: Role | "enroll" | "node";
  tenant: string | null;
  address: string;
}

const principals = new WeakMap<FastifyRequest, Principal>();

/** Set by the access hook only. */
export const setPrincipal = (req: FastifyRequest, p: Principal): void => {
  principals.set(req, p);
};

/** The request's principal; public routes (health, dashboard assets) have none and throw UNAUTHORIZED. */
export const principalOf = (req: FastifyRequest): Principal => {
  const p = principals.get(req);
  if (!p) throw new FleetlinkError("UNAUTHORIZED", "this request carries no credential");
  return p;
};

/** The request's principal, or undefined on public routes. */
export const maybePrincipalOf = (req: FastifyRequest): Principal | undefined => principals.get(req);

/** Whether `p` may see things of `tenant`: unscoped credentials see every tenant. */
export const sees = (p: Principal, tenant: string): boolean => p.tenant === null || p.tenant === tenant;

/** The tenant filter for a list: undefined (all) for an unscoped principal, else its own tenant. */
export const tenantFilter = (p: Principal): string | undefined => p.tenant ?? undefined;

/**
 * The principal as an audit entry names it, with the tenant the action concerns: an unscoped admin acting on a
 * tenant's node, run or token is that tenant's history too, so the tenant's own admins see it in GET /v1/audit.
 * An action on something of no tenant (null: an unscoped token) stays unscoped.
 */
export const about = (p: Principal, tenant: string | null): Principal =>
  tenant === null ? p : { ...p, tenant: p.tenant ?? tenant };
