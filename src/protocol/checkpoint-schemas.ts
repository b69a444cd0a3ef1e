/**
 * The checkpoint routes (src/hub/checkpoints/routes.ts, hubs started with a checkpoint store), described once
 * for validation and the OpenAPI document.
 */
import { Type } from "@sinclair/typebox";
import type { ErrorName } from "./errors.ts";
import { routeSchema } from "./route-doc.ts";
import { ErrorBodySchema, Millis, Nullable, StringEnum, Uuid } from "./schemas.ts";

/** Host indexes are below the 10 000 hosts a run may have. */
export const MAX_HOST_IDX = 9999;
const strict = { additionalProperties: false } as const;
const RunParams = Type.Object({ run: Uuid }, strict);
/** For routes that take no body: none, `{}` or null; anything else is refused before the handler runs. */
const NoBody = Type.Unsafe<Record<string, never> | null>({
  type: ["object", "null"],
  properties: {},
  additionalProperties: false,
  description: "No body, `{}` or null",
});
const tags = ["checkpoints"];
/** Errors of every checkpoint route that reads the run. */
const base: ErrorName[] = ["RUN_NOT_FOUND"];
const objectStore: ErrorName[] = ["OBJECT_STORE_UNAVAILABLE", "OBJECT_STORE_AUTH"];

const KindError = Type.Object({ kind: Type.String(), message: Type.String() });
const HostRole = Type.Object({
  hostIdx: Type.Integer({ minimum: 0 }),
  nodeId: Uuid,
  standby: Type.Array(Uuid, { description: "Warm standbys, in takeover order" }),
});
const Roles = Type.Object(
  { runId: Uuid, nHosts: Type.Integer(), hosts: Type.Array(HostRole) },
  { title: "Roles" },
);
const RoleChange = Type.Object({
  hostIdx: Type.Integer(),
  from: Nullable(Uuid),
  to: Nullable(Uuid),
  standby: Type.Optional(Type.Object({ from: Type.Array(Uuid), to: Type.Array(Uuid) })),
  text: Type.String({ description: "What changed, in a sentence" }),
});
const OpStatus = Type.Object(
  {
    status: StringEnum(["not_requested", "in_progress", "ok", "error"] as const),
    id: Type.Optional(Uuid),
    hosts: Type.Array(
      Type.Object({
        hostIdx: Type.Integer(),
        nodeId: Uuid,
        status: StringEnum(["in_progress", "ok", "error"] as const),
        error: Type.Optional(KindError),
        restoresFrom: Type.Optional(Uuid),
      }),
    ),
    error: Type.Optional(
      Type.Object({ kind: Type.String(), message: Type.String(), hostIdx: Type.Optional(Type.Integer()) }),
    ),
    startedAt: Type.Optional(Millis()),
    updatedAt: Type.Optional(Millis()),
  },
  { title: "CheckpointOpStatus" },
);
const Started = Type.Object({ id: Uuid });
/** 409: another push or pull is in progress; its status comes along. */
const Busy = Type.Object(
  { error: ErrorBodySchema.properties.error, status: Nullable(OpStatus) },
  { description: "`FLEETLINK_E_CONFLICT`: another push or pull of this run is in progress (its status)" },
);

export const CheckpointRoutes = {
  assign: routeSchema({
    summary: "Assign host roles",
    description:
      "Host k is `hosts[k]`; standbys take over a host whose node fails. Every host is told its role. " +
      "Answers the roles and what changed from the previous assignment.",
    tags,
    auth: "admin",
    errors: [...base, "NODE_NOT_FOUND"],
    params: RunParams,
    body: Type.Object(
      {
        hosts: Type.Array(Uuid, { minItems: 1, maxItems: MAX_HOST_IDX + 1 }),
        standby: Type.Optional(
          Type.Array(
            Type.Object(
              { hostIdx: Type.Integer({ minimum: 0, maximum: MAX_HOST_IDX }), nodeId: Uuid },
              strict,
            ),
            { maxItems: MAX_HOST_IDX + 1 },
          ),
        ),
      },
      { ...strict, examples: [{ hosts: ["01939a5e-8c2a-7b4e-9f1d-3c5a7e9b2d41"] }] },
    ),
    response: { 200: Type.Object({ roles: Roles, changes: Type.Array(RoleChange) }) },
  }),
  roles: routeSchema({
    summary: "Show host roles",
    description: "The run's host roles (null before an assignment).",
    tags,
    auth: "admin",
    errors: base,
    params: RunParams,
    response: { 200: Type.Object({ roles: Nullable(Roles) }) },
  }),
  activate: routeSchema({
    summary: "Activate a standby",
    description: "Makes the host's first standby its holder now (a manual takeover).",
    tags,
    auth: "admin",
    errors: [...base, "CONFLICT"],
    // Path parameters arrive as strings and types are not coerced: a digit string, converted by the route.
    params: Type.Object(
      { run: Uuid, host: Type.String({ pattern: "^[0-9]{1,6}$", examples: ["0"] }) },
      strict,
    ),
    body: NoBody,
    response: { 200: Type.Object({ roles: Roles }) },
  }),
  push: routeSchema({
    summary: "Start a checkpoint push",
    description: "Every host uploads its state to the object store; follow it with push_status.",
    tags,
    auth: "admin",
    errors: [...base, "CONFLICT", ...objectStore],
    params: RunParams,
    body: NoBody,
    response: { 202: Started, 409: Busy },
  }),
  pull: routeSchema({
    summary: "Start a checkpoint pull",
    description:
      "Every host restores its state from a checkpoint (`latest` or an id); follow it with pull_status. " +
      "`allowRoleChanges` lets hosts restore a part another node wrote.",
    tags,
    auth: "admin",
    errors: [...base, "CONFLICT", "CHECKPOINT_NOT_FOUND", "HOST_MISMATCH", ...objectStore],
    params: RunParams,
    body: Type.Object(
      {
        id: Type.Union([Uuid, Type.Literal("latest")]),
        allowRoleChanges: Type.Optional(Type.Boolean({ description: "(Default: false)" })),
      },
      { ...strict, examples: [{ id: "latest" }] },
    ),
    response: { 202: Started, 409: Busy },
  }),
  status: (kind: "push" | "pull") =>
    routeSchema({
      summary: `Checkpoint ${kind} status`,
      description: `Where the run's latest ${kind} stands, host by host.`,
      tags,
      auth: "admin",
      errors: base,
      params: RunParams,
      response: { 200: OpStatus },
    }),
  takeover: routeSchema({
    summary: "Standby takeover status",
    description: "Where each host's takeover by a standby stands (one record per host, shared by replicas).",
    tags,
    auth: "admin",
    errors: base,
    params: RunParams,
    response: {
      200: Type.Object({
        hosts: Type.Array(
          Type.Object({
            hostIdx: Type.Integer(),
            from: Uuid,
            to: Nullable(Uuid),
            status: StringEnum(["in_progress", "retrying", "failed", "ok", "recovered"] as const),
            attempts: Type.Integer(),
            nextAttemptAt: Type.Optional(Millis()),
            error: Type.Optional(KindError),
            updatedAt: Millis(),
          }),
        ),
      }),
    },
  }),
  list: routeSchema({
    summary: "List checkpoints",
    description: "The run's complete checkpoints in the object store.",
    tags,
    auth: "admin",
    errors: [...base, ...objectStore],
    params: RunParams,
    response: {
      200: Type.Object({
        checkpoints: Type.Array(
          Type.Object({ id: Uuid, createdAt: Millis(), nHosts: Type.Integer(), bytes: Type.Integer() }),
        ),
      }),
    },
  }),
} as const;
