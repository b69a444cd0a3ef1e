/**
 * The wire, described once (TypeBox, i.e. JSON Schema): the shapes both HTTP routes and stream frames are
 * made of. The hub validates requests with them (Fastify's Ajv for HTTP, TypeBox's compiler for frames) and
 * publishes them as OpenAPI at /openapi.json; http-schemas.ts, checkpoint-schemas.ts and stream-schemas.ts
 * build the routes and frames from these pieces.
 */
import { FormatRegistry, Kind, type Static, type TSchema, Type, TypeRegistry } from "@sinclair/typebox";
import { TRACEPARENT_PATTERN } from "../util/tracing.ts";
import { isId } from "./ids.ts";
import { MAX_ERROR_MESSAGE_CHARS, MAX_TTL_MS } from "./limits.ts";

// Ajv (HTTP) knows the uuid format through ajv-formats; TypeBox's compiler (frames) needs to be told.
if (!FormatRegistry.Has("uuid")) FormatRegistry.Set("uuid", isId);

export const Uuid = Type.String({ format: "uuid", examples: ["01939a5e-8c2a-7b4e-9f1d-3c5a7e9b2d41"] });
/** Names, methods, labels, group ids: 1 to 200 characters. */
export const Name = (o: { description?: string; examples?: string[] } = {}) =>
  Type.String({ minLength: 1, maxLength: 200, ...o });
/** Times are milliseconds since the epoch. */
export const Millis = (description?: string) =>
  Type.Integer({ description: description ?? "ms since the epoch" });
export const Nullable = <T extends TSchema>(s: T) => Type.Union([s, Type.Null()]);
/**
 * A string enum as a plain `enum` (not TypeBox's anyOf of literals), so Ajv's error says "must be equal to one
 * of the allowed values" at the field itself.
 */
export const StringEnum = <const T extends readonly string[]>(values: T, description?: string) =>
  Type.Unsafe<T[number]>({
    [Kind]: "StringEnum",
    type: "string",
    enum: [...values],
    ...(description ? { description } : {}),
  });
// So that TypeBox's compiler can check StringEnum values too (Ajv reads the plain `enum`).
if (!TypeRegistry.Has("StringEnum"))
  TypeRegistry.Set<{ enum: string[] }>(
    "StringEnum",
    (schema, v) => typeof v === "string" && schema.enum.includes(v),
  );
/** A W3C trace context (docs/tracing.md): version 00, lowercase hex, ids not all zeros. */
export const Traceparent = (description: string) =>
  Type.String({
    // The anchored pattern bounds the length (55 characters).
    pattern: TRACEPARENT_PATTERN,
    description: `${description}: \`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>\`, lowercase`,
    examples: ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
  });
/** Any JSON value (payloads are the application's). */
export const Json = (description = "any JSON value") => Type.Unknown({ description });

export const RunStatusSchema = StringEnum(["pending", "running", "finished"] as const);
export const NodeStatusSchema = StringEnum(["registered", "online", "offline", "unregistered"] as const);
export const InstructionStateSchema = StringEnum(["pending", "leased", "done"] as const);

/** Every error fleetlink sends, over HTTP and in `err` frames (FleetlinkError.toJSON()). */
export const WireErrorSchema = Type.Object(
  {
    code: Type.String({
      minLength: 1,
      maxLength: 200,
      description: "A stable `FLEETLINK_E_…` code (docs/errors.md)",
      examples: ["FLEETLINK_E_INVALID_ARGUMENT"],
    }),
    message: Type.String({ description: `What went wrong (at most ${MAX_ERROR_MESSAGE_CHARS} characters)` }),
    field: Type.Optional(
      Type.String({ description: "The input field at fault", examples: ["body.items.0.ttlMs"] }),
    ),
    definite: Type.Optional(
      Type.Boolean({ description: "true: the operation surely did not happen; false: it may have" }),
    ),
  },
  { title: "WireError" },
);
export type WireErrorBody = Static<typeof WireErrorSchema>;

/** The body of every HTTP error answer. */
export const ErrorBodySchema = Type.Object(
  { error: WireErrorSchema },
  {
    title: "ErrorBody",
    examples: [
      {
        error: {
          code: "FLEETLINK_E_INVALID_ARGUMENT",
          message: "body.items.0.ttlMs: must be >= 1",
          field: "body.items.0.ttlMs",
          definite: true,
        },
      },
    ],
  },
);

/** A handler's error outcome in a reply (the hub's own outcomes use `FLEETLINK_E_…` codes). */
export const ReplyErrorSchema = Type.Object({
  code: Name({ examples: ["FLEETLINK_E_HANDLER_FAILED"] }),
  message: Type.String(),
});

export const RunSchema = Type.Object(
  {
    id: Uuid,
    status: RunStatusSchema,
    reason: Nullable(Type.String({ description: "Why the run finished" })),
    createdAt: Millis(),
    updatedAt: Millis(),
    tenant: Type.String({ description: "The run's tenant: its instructions reach only that tenant's nodes" }),
  },
  {
    title: "Run",
    examples: [
      {
        id: "01939a5e-8c2a-7b4e-9f1d-3c5a7e9b2d41",
        status: "running",
        reason: null,
        createdAt: 1_764_662_400_000,
        updatedAt: 1_764_662_401_000,
        tenant: "default",
      },
    ],
  },
);

/** A node as the API shows it: never its credential or the credential's hash. */
export const NodeSchema = Type.Object(
  {
    id: Uuid,
    name: Name({ examples: ["worker-1"] }),
    status: NodeStatusSchema,
    heartbeatIntervalMs: Type.Integer({ minimum: 1 }),
    onlineUntil: Nullable(Millis("Last heartbeat + 2 × interval; null before the first heartbeat")),
    createdAt: Millis(),
    approved: Type.Boolean({ description: "false while the node waits for an admin's approval" }),
    tenant: Type.String({ description: "The node's tenant (its enrollment token's)" }),
    agent: Nullable(
      Type.Object(
        {
          name: Type.String({ description: "The node implementation its last hello named (fleetlink-ts…)" }),
          version: Type.String({ description: "That implementation's version" }),
          protocol: Type.Integer({ description: "The node protocol version it spoke" }),
        },
        {
          title: "NodeAgent",
          description: "The software the node's last hello named; null if it named none",
        },
      ),
    ),
  },
  {
    title: "Node",
    examples: [
      {
        id: "01939a5e-8c2a-7b4e-9f1d-3c5a7e9b2d41",
        name: "worker-1",
        status: "online",
        heartbeatIntervalMs: 5000,
        onlineUntil: 1_764_662_410_000,
        createdAt: 1_764_662_400_000,
        approved: true,
        tenant: "default",
        agent: { name: "fleetlink-ts", version: "0.1.0", protocol: 1 },
      },
    ],
  },
);

/** A stored enrollment token as the API shows it: never its secret or the secret's hash. */
export const EnrollTokenSchema = Type.Object(
  {
    id: Uuid,
    label: Nullable(Type.String()),
    createdAt: Millis(),
    expiresAt: Nullable(Millis("Refused from this time on; null: never expires")),
    uses: Nullable(Type.Integer({ description: "Enrollments allowed; null: any number" })),
    used: Type.Integer(),
    revoked: Type.Boolean(),
    tenant: Type.String({ description: "Tenant of the nodes enrolled with it" }),
  },
  { title: "EnrollToken" },
);

/** One instruction of a push (POST /v1/runs/:run/instructions). */
export const NewInstructionSchema = Type.Object(
  {
    id: Type.Optional(
      Type.String({ format: "uuid", description: "Caller-chosen id, for idempotent retries" }),
    ),
    dst: Type.String({ format: "uuid", description: "The node it is for" }),
    method: Name({ examples: ["square"] }),
    payload: Type.Optional(Json("The handler's argument (any JSON value)")),
    ttlMs: Type.Integer({ minimum: 1, maximum: MAX_TTL_MS, description: "Time to live (at most 30 days)" }),
    groupId: Type.Optional(Name({ description: "Groups the instructions of one call" })),
    maxAttempts: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1000, description: "(Default: the store's, 3)" }),
    ),
    holdWhileOffline: Type.Optional(
      Type.Boolean({
        description: "Wait for an offline node until the TTL instead of failing. (Default: false)",
      }),
    ),
    traceparent: Type.Optional(
      Traceparent("The caller's trace context, handed to the node's handler (W3C traceparent)"),
    ),
  },
  { additionalProperties: false },
);

/** An instruction as a node receives it (the `instruction` request on the node stream). */
export const WireInstructionSchema = Type.Object(
  {
    id: Uuid,
    runId: Uuid,
    method: Name({ examples: ["square"] }),
    payload: Json(),
    groupId: Nullable(Type.String()),
    attempts: Type.Integer({ minimum: 0, description: "Deliveries so far, this one included" }),
    expiresAt: Millis(),
    traceparent: Type.Optional(
      Traceparent(
        "The trace context the call was pushed with (absent when it had none); nodes may ignore it",
      ),
    ),
  },
  { title: "WireInstruction" },
);

/** A reply as a coordinator receives it (HTTP reads and the run stream's `replies` event). */
export const WireResultSchema = Type.Object(
  {
    id: Uuid,
    replyTo: Uuid,
    node: Uuid,
    groupId: Nullable(Type.String()),
    method: Type.String(),
    payload: Json("The handler's result (null for error replies)"),
    error: Nullable(ReplyErrorSchema),
    createdAt: Millis(),
    traceparent: Type.Optional(
      Traceparent(
        "The trace context the node replied with: its handler's span, else the instruction's (absent when none)",
      ),
    ),
  },
  { title: "WireResult" },
);

/**
 * Every named schema (by its title), for the OpenAPI document's components. Routes embed them inline: no `$id`,
 * so Fastify's Ajv compiles each route on its own.
 */
export const sharedSchemas = [
  WireErrorSchema,
  ErrorBodySchema,
  RunSchema,
  NodeSchema,
  EnrollTokenSchema,
  WireInstructionSchema,
  WireResultSchema,
] as const;
