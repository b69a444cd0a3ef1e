import type { FastifyInstance } from "fastify";
import { FleetlinkError, isFleetlinkError } from "../../protocol/errors.ts";
import { HttpRoutes as R } from "../../protocol/http-schemas.ts";
import type { Role } from "../../protocol/types.ts";
import type { PrincipalRecord, Store } from "../../store/store.ts";
import type { AuditSink } from "./access.ts";
import { formatPrincipalToken, hashCredential, newSecret } from "./auth.ts";
import { about, principalOf, tenantFilter } from "./principal.ts";
import { tenantFor } from "./tenancy.ts";

export interface TokensRoutesContext {
  store: Store;
  audit: AuditSink;
}

const publicPrincipal = ({ secretHash: _, ...p }: PrincipalRecord) => p;
const notFound = () => new FleetlinkError("TOKEN_NOT_FOUND", "no such token", { field: "token" });

/**
 * Principal tokens (`flt_<id>.<secret>`): credentials of people and services, each with a role and optionally
 * one tenant, managed by admins. A tenant-scoped admin sees and makes tokens of its own tenant only (never an
 * unscoped one); another tenant's token reads as unknown.
 */
export const registerTokensRoutes = (app: FastifyInstance, ctx: TokensRoutesContext): void => {
  const { store, audit } = ctx;
  const manage = { config: { access: "manage" } } as const;

  app.post("/v1/tokens", { ...manage, bodyLimit: 4096, schema: R.createPrincipal }, async (req, reply) => {
    const b = req.body as { role: Role; tenant?: string | null; label?: string; ttlMs?: number };
    const p = principalOf(req);
    const tenant = tenantFor(p, b.tenant, null);
    const secret = newSecret();
    const t = await store.createPrincipal({
      role: b.role,
      tenant,
      label: b.label ?? null,
      secretHash: hashCredential(secret),
      // The store's clock, so that every replica agrees on the expiry.
      expiresAt: b.ttlMs === undefined ? null : (await store.now()) + b.ttlMs,
    });
    audit.record(about(p, t.tenant), "token.create", t.id, "ok", {
      role: t.role,
      tenant: t.tenant,
      label: t.label,
    });
    // Shown once: the store keeps only the hash.
    return reply.code(201).send({ token: publicPrincipal(t), secret: formatPrincipalToken(t.id, secret) });
  });

  app.get("/v1/tokens", { ...manage, bodyLimit: 1024, schema: R.listPrincipals }, async (req) => ({
    tokens: (await store.listPrincipals({ tenant: tenantFilter(principalOf(req)) })).map(publicPrincipal),
  }));

  app.delete("/v1/tokens/:token", { ...manage, bodyLimit: 1024, schema: R.revokePrincipal }, async (req) => {
    const { token } = req.params as { token: string };
    const p = principalOf(req);
    if (p.tenant !== null && !(await store.listPrincipals({ tenant: p.tenant })).some((t) => t.id === token))
      throw notFound();
    // The store names its argument (`id`); here it is the path's `:token`.
    const t = await store.revokePrincipal(token).catch((e: unknown) => {
      throw isFleetlinkError(e, "TOKEN_NOT_FOUND") ? notFound() : e;
    });
    audit.record(about(p, t.tenant), "token.revoke", t.id, "ok");
    return { token: publicPrincipal(t) };
  });
};
