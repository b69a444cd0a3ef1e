/**
 * How a route is described: its Fastify schema (params, querystring, body, responses) plus what the OpenAPI
 * document shows (summary, description, tags, auth, error codes, examples). One call per route builds both, so
 * the validation and the reference cannot drift apart.
 */
import type { TSchema } from "@sinclair/typebox";
import { type ErrorCode, ErrorCodes, type ErrorName, errorCode } from "./errors.ts";
import { ErrorBodySchema } from "./schemas.ts";

/** The OpenAPI security schemes (components.securitySchemes) a route may name. */
export const SecuritySchemes = {
  adminToken: {
    type: "http",
    scheme: "bearer",
    description:
      "The hub's admin token (`serve --token` / `--token-file`), or a principal token `flt_<id>.<secret>` " +
      "(POST /v1/tokens) with a role (admin, coordinator, reader, metrics) and optionally one tenant. Each " +
      "operation's `x-access` says which roles it admits (docs/api.md#access-needs).",
  },
  enrollToken: {
    type: "http",
    scheme: "bearer",
    description:
      "An enrollment token: the hub's static one (`serve --enroll-token`) or a stored one " +
      "(`fle_<id>.<secret>`, from POST /v1/enroll-tokens). It may only enroll nodes.",
  },
  nodeCredential: {
    type: "http",
    scheme: "bearer",
    description:
      "A node credential `<nodeId>.<secret>`, issued once by POST /v1/nodes/enroll. It may only open its own " +
      "node stream.",
  },
  bearer: {
    type: "http",
    scheme: "bearer",
    description: "A bearer token; the route's description says which ones it takes (e.g. /metrics).",
  },
} as const;
export type SecurityScheme = keyof typeof SecuritySchemes;

/** Which credential a route takes (`none`: public). */
export type Auth = "admin" | "enroll" | "node" | "none";
const schemeOf = { admin: "adminToken", enroll: "enrollToken", node: "nodeCredential" } as const;

/** Codes any route with a credential may answer: none or an unknown one (401), a known one of another role (403). */
export const AUTH_ERRORS: readonly ErrorName[] = ["UNAUTHORIZED", "FORBIDDEN"];
/** Codes every route may answer: malformed input, a body over the route's limit, a store outage, a hub bug. */
export const COMMON_ERRORS: readonly ErrorName[] = [
  "INVALID_ARGUMENT",
  "PAYLOAD_TOO_LARGE",
  "STORE_UNAVAILABLE",
  "INTERNAL",
];
/** The OpenAPI extension listing a route's possible error codes. */
export const ERROR_CODES_KEY = "x-error-codes";

export interface RouteDoc {
  summary: string;
  description: string;
  tags: string[];
  auth: Auth;
  /** Error codes of this route besides the common and auth ones. */
  errors?: readonly ErrorName[];
  params?: TSchema;
  querystring?: TSchema;
  body?: TSchema;
  /** Success answers by HTTP status; error answers are added from `errors`. */
  response: Record<number, TSchema>;
}

/** A status's description: the codes that answer with it, each with its meaning. */
const describeCodes = (codes: readonly ErrorName[]): string =>
  codes.map((c) => `\`${errorCode(c)}\`: ${ErrorCodes[c].text}`).join("; ");

/** Every error code of a route, auth and common ones included. */
export const routeErrors = (auth: Auth, errors: readonly ErrorName[] = []): ErrorName[] => [
  ...new Set([...(auth === "none" ? [] : AUTH_ERRORS), ...COMMON_ERRORS, ...errors]),
];

/** Error responses, grouped by HTTP status, each with the error body schema. */
export const errorResponses = (codes: readonly ErrorName[]): Record<number, TSchema> => {
  const byStatus = new Map<number, ErrorName[]>();
  for (const c of codes) {
    const s = ErrorCodes[c].status;
    byStatus.set(s, [...(byStatus.get(s) ?? []), c]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, cs]) => [status, { ...ErrorBodySchema, description: describeCodes(cs) }]),
  );
};

/** The Fastify route schema for a route (validation parts + OpenAPI annotations). */
export const routeSchema = (d: RouteDoc) => {
  const codes = routeErrors(d.auth, d.errors);
  const list: ErrorCode[] = codes.map(errorCode);
  return {
    summary: d.summary,
    description: `${d.description}\n\nError codes: ${list.map((c) => `\`${c}\``).join(", ")}.`,
    tags: d.tags,
    security: d.auth === "none" ? [] : [{ [schemeOf[d.auth]]: [] }],
    [ERROR_CODES_KEY]: list,
    ...(d.params ? { params: d.params } : {}),
    ...(d.querystring ? { querystring: d.querystring } : {}),
    ...(d.body ? { body: d.body } : {}),
    response: { ...errorResponses(codes), ...d.response },
  };
};
