import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { invalid } from "../../protocol/errors.ts";
import { routeSchema } from "../../protocol/route-doc.ts";
import { Millis, Nullable, StringEnum } from "../../protocol/schemas.ts";
import type { Store } from "../../store/store.ts";
import { principalOf } from "./principal.ts";

export interface AuditRoutesContext {
  store: Pick<Store, "listAudit">;
}

const strict = { additionalProperties: false } as const;
/** Query values arrive as strings and are not coerced (like the other routes): digits, range checked here. */
const Digits = (description: string, examples: string[]) =>
  Type.String({ pattern: "^[0-9]{1,15}$", description, examples });

export const AuditEntrySchema = Type.Object(
  {
    seq: Type.Integer({ description: "Position in the log; newer entries have larger ones" }),
    at: Millis("When it was stored (the store's clock)"),
    principal: Type.String({
      description:
        'Who: a stored token\'s id, or "admin-token" / "enroll-token" / "metrics-token" / "node:<id>"',
    }),
    role: Type.String({
      description: "The credential's role (admin, coordinator, reader, metrics, enroll, node)",
    }),
    tenant: Nullable(Type.String({ description: "The credential's tenant; null: unscoped" })),
    address: Nullable(Type.String({ description: "The client address" })),
    action: Type.String({ description: "What was done, e.g. node.approve, token.create, run.create" }),
    target: Nullable(Type.String({ description: "The id acted on" })),
    outcome: StringEnum(["ok", "refused"] as const, "refused: the hub answered 401 or 403"),
    detail: Nullable(Type.Record(Type.String(), Type.Unknown(), { description: "A little more (≤ 4 KiB)" })),
  },
  { title: "AuditEntry" },
);

export const AuditRoutes = {
  listAudit: routeSchema({
    summary: "Read the audit log",
    description:
      "Who (principal, role, tenant, address) did what (enrolments, approvals, unregistrations, tokens, runs, " +
      "checkpoints, refused requests) and when, newest first. At most `limit` entries (1 to 1000, default 100); " +
      "`next` is the `before` of the next, older page (null on the last). Admins only; an admin of one tenant " +
      "sees only that tenant's entries. See docs/audit.md.",
    tags: ["audit"],
    auth: "admin",
    querystring: Type.Object(
      {
        limit: Type.Optional(Digits("Most entries returned, 1 to 1000. (Default: 100)", ["50"])),
        before: Type.Optional(
          Digits("Only entries with a smaller seq (the `next` of the last page)", ["1200"]),
        ),
        action: Type.Optional(Type.String({ minLength: 1, maxLength: 100, examples: ["node.approve"] })),
        principal: Type.Optional(Type.String({ minLength: 1, maxLength: 200, examples: ["admin-token"] })),
      },
      { ...strict, examples: [{ limit: "50", action: "token.create" }] },
    ),
    response: {
      200: Type.Object({
        entries: Type.Array(AuditEntrySchema),
        next: Nullable(Type.Integer({ description: "`before` of the next page; null: this is the last" })),
      }),
    },
  }),
  whoami: routeSchema({
    summary: "Who this token is",
    description:
      "The principal the bearer token stands for: its id, label, role and tenant (null: every tenant). The " +
      "dashboard asks this at login to show who is logged in and which actions it may take.",
    tags: ["tokens"],
    auth: "admin",
    response: {
      200: Type.Object(
        {
          principal: Type.Object({
            id: Type.String(),
            label: Nullable(Type.String()),
            role: Type.String(),
            tenant: Nullable(Type.String()),
          }),
        },
        {
          examples: [{ principal: { id: "admin-token", label: null, role: "admin", tenant: null } }],
        },
      ),
    },
  }),
} as const;

/** A digit string as an integer; the range is checked here so that the error names the query field. */
const int = (field: string, v: string | undefined, min: number, max: number): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw invalid(`querystring.${field}`, `must be an integer from ${min} to ${max}`);
  return n;
};

/** `GET /v1/audit` (admins; scoped to the admin's tenant) and `GET /v1/whoami` (any reading role). */
export const registerAuditRoutes = (app: FastifyInstance, ctx: AuditRoutesContext): void => {
  app.get(
    "/v1/audit",
    { config: { access: "manage" }, bodyLimit: 1024, schema: AuditRoutes.listAudit },
    async (req) => {
      const q = req.query as { limit?: string; before?: string; action?: string; principal?: string };
      const p = principalOf(req);
      const page = await ctx.store.listAudit({
        limit: int("limit", q.limit, 1, 1000),
        beforeSeq: int("before", q.before, 1, Number.MAX_SAFE_INTEGER),
        ...(q.action === undefined ? {} : { action: q.action }),
        ...(q.principal === undefined ? {} : { principal: q.principal }),
        ...(p.tenant === null ? {} : { tenant: p.tenant }),
      });
      return { entries: page.entries, next: page.nextBeforeSeq };
    },
  );

  app.get(
    "/v1/whoami",
    { config: { access: "read" }, bodyLimit: 1024, schema: AuditRoutes.whoami },
    async (req) => {
      const { id, label, role, tenant } = principalOf(req);
      return { principal: { id, label, role, tenant } };
    },
  );
};
