/**
 * The HTTP API's routes (src/hub/http/routes.ts), described once: Fastify validates requests with these schemas and
 * @fastify/swagger publishes them. Requests are refused, never stripped or coerced: extra properties are
 * errors, and query values are digit strings rather than coerced numbers.
 */
import { Type } from "@sinclair/typebox";
import { routeSchema } from "./route-doc.ts";
import {
  EnrollTokenSchema,
  InstructionStateSchema,
  Millis,
  Name,
  NewInstructionSchema,
  NodeSchema,
  Nullable,
  ReplyErrorSchema,
  RunSchema,
  RunStatusSchema,
  Uuid,
  WireResultSchema,
} from "./schemas.ts";

const idParams = <const K extends string>(...names: K[]) =>
  Type.Object(Object.fromEntries(names.map((n) => [n, Uuid])) as Record<K, typeof Uuid>);
/** Most ids in one list body. */
export const MAX_IDS = 100_000;
const IdList = Type.Array(Uuid, { maxItems: MAX_IDS });
/** Routes without a body take none, or `{}` (or null). */
export const EmptyBody = Type.Unsafe<Record<string, never> | null>({
  type: ["object", "null"],
  properties: {},
  additionalProperties: false,
  description: "No body, `{}` or null",
});
/** Query values arrive as strings and are not coerced: digits, whose range the store checks. */
const LimitQuery = Type.String({
  pattern: "^[0-9]{1,6}$",
  description: "Most items returned, 1 to 1000 (digits). (Default: 100)",
  examples: ["50"],
});
const strict = { additionalProperties: false } as const;
/** A tenant name (the store checks the same rule). */
export const TenantName = Type.String({
  pattern: "^[a-z0-9][a-z0-9_-]{0,62}$",
  description: "A tenant: a-z, 0-9, `_` and `-`, starting with a letter or digit, 1-63 characters",
  examples: ["team-a"],
});
const TENANT_RULE =
  "A tenant-scoped token acts only in its own tenant (naming another is 403); an unscoped one may name any.";
/** Roles of principal tokens (src/protocol/types.ts ROLES). */
const RoleSchema = Type.Union(
  [Type.Literal("admin"), Type.Literal("coordinator"), Type.Literal("reader"), Type.Literal("metrics")],
  {
    description:
      "admin: everything; coordinator: read and drive runs; reader: read only; metrics: GET /metrics",
  },
);
/** A principal token as the hub lists it (never its secret). */
export const PrincipalTokenSchema = Type.Object(
  {
    id: Uuid,
    label: Nullable(Type.String()),
    role: RoleSchema,
    tenant: Nullable(Type.String({ description: "The one tenant it acts in; null: every tenant" })),
    createdAt: Millis(),
    expiresAt: Nullable(Millis("Refused from this time on; null: never expires")),
    revokedAt: Nullable(Millis("When it was revoked; null: not revoked")),
  },
  { title: "PrincipalToken" },
);

const NodeBody = Type.Object({ node: NodeSchema });
const RunBody = Type.Object({ run: RunSchema });
const TokenBody = Type.Object({ token: EnrollTokenSchema });
const Ok = Type.Object({ ok: Type.Literal(true) });

const StatsSchema = Type.Object({
  store: Type.Object({
    backend: Type.Union([Type.Literal("sqlite"), Type.Literal("postgres")], {
      description: "The store's backend (`memory:` is SQLite in memory)",
    }),
    runs: Type.Record(Type.String(), Type.Integer(), { description: "Runs per status" }),
    nodes: Type.Record(Type.String(), Type.Integer(), { description: "Nodes per status" }),
    // null for a tenant-scoped caller: store-wide counts would tell it about other tenants.
    instructions: Nullable(
      Type.Object({ pending: Type.Integer(), leased: Type.Integer(), done: Type.Integer() }),
    ),
    replies: Nullable(Type.Object({ pending: Type.Integer(), claimed: Type.Integer() })),
  }),
  hub: Type.Record(Type.String(), Type.Number(), {
    description: "This replica's counters (connectedNodes, runSubscribers, …)",
  }),
});

const InstructionStatus = Type.Object({
  id: Uuid,
  dst: Uuid,
  state: InstructionStateSchema,
  attempts: Type.Integer(),
  expiresAt: Millis(),
});

const nodes = ["nodes"];
const runs = ["runs"];
const tokens = ["enrollment"];
const principals = ["tokens"];

/** Every route of src/hub/http/routes.ts, by name. */
export const HttpRoutes = {
  healthz: routeSchema({
    summary: "Liveness",
    description:
      "Answers while the process serves HTTP (no store access). For load balancers and HEALTHCHECK.",
    tags: ["operate"],
    auth: "none",
    response: { 200: Ok },
  }),
  readyz: routeSchema({
    summary: "Readiness",
    description:
      "Answers 200 when the store answered within 2 s, else 503: take the replica out of rotation.",
    tags: ["operate"],
    auth: "none",
    response: {
      200: Ok,
      503: Type.Object(
        { ok: Type.Literal(false), error: Type.String() },
        { description: "The store did not answer in time (the body says why)" },
      ),
    },
  }),
  enroll: routeSchema({
    summary: "Enroll a node",
    description:
      "Registers a node and issues its credential `<nodeId>.<secret>` (shown once; only its hash is stored). " +
      "With a stored token, one of its uses is taken atomically. Rate limited per client address. With " +
      "`serve --enroll-approval manual` the node stays pending until approved.",
    tags: nodes,
    auth: "enroll",
    errors: ["NAME_TAKEN", "RATE_LIMITED"],
    body: Type.Object(
      {
        name: Name({ description: "Unique among live nodes", examples: ["worker-1"] }),
        heartbeatIntervalMs: Type.Optional(
          Type.Integer({ minimum: 100, maximum: 3_600_000, description: "(Default: the hub's, 5000)" }),
        ),
      },
      { ...strict, examples: [{ name: "worker-1", heartbeatIntervalMs: 5000 }] },
    ),
    response: {
      201: Type.Object({
        node: NodeSchema,
        credential: Type.String({
          description: "The node's secret; send `<nodeId>.<credential>` as its bearer",
        }),
      }),
    },
  }),
  listNodes: routeSchema({
    summary: "List nodes",
    description: "Every node the hub knows, whatever its status.",
    tags: nodes,
    auth: "admin",
    response: { 200: Type.Object({ nodes: Type.Array(NodeSchema) }) },
  }),
  getNode: routeSchema({
    summary: "Show a node",
    description: "One node by id.",
    tags: nodes,
    auth: "admin",
    errors: ["NODE_NOT_FOUND"],
    params: idParams("node"),
    response: { 200: NodeBody },
  }),
  approveNode: routeSchema({
    summary: "Approve a pending node",
    description: "Lets a node enrolled under manual approval in (idempotent).",
    tags: nodes,
    auth: "admin",
    errors: ["NODE_NOT_FOUND", "NODE_UNREGISTERED"],
    params: idParams("node"),
    response: { 200: NodeBody },
  }),
  unregisterNode: routeSchema({
    summary: "Unregister a node",
    description:
      "Marks the node unregistered and closes its stream: its credential stops working, its unanswered " +
      "instructions end with NODE_UNAVAILABLE.",
    tags: nodes,
    auth: "admin",
    errors: ["NODE_NOT_FOUND"],
    params: idParams("node"),
    response: { 200: NodeBody },
  }),
  createToken: routeSchema({
    summary: "Create an enrollment token",
    description:
      "A stored enrollment token, optionally expiring and limited in uses. Its secret is shown once (the " +
      "store keeps a hash); revocation applies on every replica at once.",
    tags: tokens,
    auth: "admin",
    body: Type.Object(
      {
        label: Type.Optional(Name({ examples: ["rack-7"] })),
        ttlMs: Type.Optional(
          Type.Integer({
            minimum: 1000,
            maximum: 366 * 24 * 3_600_000,
            description: "(Default: never expires)",
          }),
        ),
        uses: Type.Optional(
          Type.Integer({ minimum: 1, maximum: 1_000_000, description: "(Default: unlimited)" }),
        ),
        tenant: Type.Optional({
          ...TenantName,
          description: `The tenant nodes enrolled with it join. ${TENANT_RULE} (Default: the token's tenant, else "default")`,
        }),
      },
      { ...strict, examples: [{ label: "rack-7", ttlMs: 86_400_000, uses: 10 }] },
    ),
    response: {
      201: Type.Object({
        token: EnrollTokenSchema,
        secret: Type.String({ description: "`fle_<id>.<secret>`: give it to the nodes that enroll with it" }),
      }),
    },
  }),
  listTokens: routeSchema({
    summary: "List enrollment tokens",
    description: "Every stored enrollment token, newest first (never their secrets).",
    tags: tokens,
    auth: "admin",
    response: { 200: Type.Object({ tokens: Type.Array(EnrollTokenSchema) }) },
  }),
  revokeToken: routeSchema({
    summary: "Revoke an enrollment token",
    description: "Refused from now on, on every replica (idempotent).",
    tags: tokens,
    auth: "admin",
    errors: ["TOKEN_NOT_FOUND"],
    params: idParams("token"),
    response: { 200: TokenBody },
  }),
  createRun: routeSchema({
    summary: "Create a run",
    description:
      "A run groups a coordinator's instructions and replies; subscribe to its stream for replies.",
    tags: runs,
    auth: "admin",
    body: Type.Unsafe<{ tenant?: string } | undefined>({
      type: "object",
      properties: {
        tenant: {
          ...TenantName,
          description: `The run's tenant: its instructions reach only that tenant's nodes. ${TENANT_RULE} (Default: the token's tenant, else "default")`,
        },
      },
      additionalProperties: false,
      description: "Optional; if present a JSON object",
      examples: [{}, { tenant: "team-a" }],
    }),
    response: { 201: RunBody },
  }),
  listRuns: routeSchema({
    summary: "List runs",
    description: "Runs newest first, optionally of one status.",
    tags: runs,
    auth: "admin",
    querystring: Type.Object(
      { status: Type.Optional(RunStatusSchema), limit: Type.Optional(LimitQuery) },
      { ...strict, examples: [{ status: "running", limit: "20" }] },
    ),
    response: { 200: Type.Object({ runs: Type.Array(RunSchema) }) },
  }),
  getRun: routeSchema({
    summary: "Show a run",
    description: "One run by id.",
    tags: runs,
    auth: "admin",
    errors: ["RUN_NOT_FOUND"],
    params: idParams("run"),
    response: { 200: RunBody },
  }),
  transitionRun: routeSchema({
    summary: "Change a run's status",
    description:
      "Compare-and-set: moves the run from `from` to `to` only if it is still `from` (pending → running → " +
      "finished, or pending → finished). A finished run takes no new instructions.",
    tags: runs,
    auth: "admin",
    errors: ["RUN_NOT_FOUND", "INVALID_TRANSITION", "STATUS_CONFLICT"],
    params: idParams("run"),
    body: Type.Object(
      {
        from: RunStatusSchema,
        to: RunStatusSchema,
        reason: Type.Optional(Type.String({ maxLength: 1000 })),
      },
      { ...strict, examples: [{ from: "running", to: "finished", reason: "done" }] },
    ),
    response: { 200: RunBody },
  }),
  pushInstructions: routeSchema({
    summary: "Push instructions",
    description:
      "Pushes a batch of instructions, all or none. Each is delivered to its node exactly once at a time " +
      "(leases), and gets exactly one reply: the node's, or an error outcome (NODE_UNAVAILABLE, " +
      "DELIVERY_FAILED, MESSAGE_EXPIRED, CANCELLED).",
    tags: runs,
    auth: "admin",
    errors: ["RUN_NOT_FOUND", "RUN_FINISHED", "NODE_NOT_FOUND", "NODE_UNREGISTERED"],
    params: idParams("run"),
    body: Type.Object(
      { items: Type.Array(NewInstructionSchema, { minItems: 1, maxItems: MAX_IDS }) },
      {
        ...strict,
        examples: [
          {
            items: [
              { dst: "01939a5e-8c2a-7b4e-9f1d-3c5a7e9b2d41", method: "square", payload: 7, ttlMs: 30_000 },
            ],
          },
        ],
      },
    ),
    response: {
      201: Type.Object({
        instructions: Type.Array(Type.Object({ id: Uuid, dst: Uuid, expiresAt: Millis() })),
      }),
    },
  }),
  listInstructions: routeSchema({
    summary: "List a run's instructions",
    description: "A run's instructions newest first, each with its reply (null while unanswered).",
    tags: runs,
    auth: "admin",
    errors: ["RUN_NOT_FOUND"],
    params: idParams("run"),
    querystring: Type.Object({ limit: Type.Optional(LimitQuery) }, strict),
    response: {
      200: Type.Object({
        instructions: Type.Array(
          Type.Object({
            id: Uuid,
            dst: Uuid,
            method: Type.String(),
            groupId: Nullable(Type.String()),
            state: InstructionStateSchema,
            attempts: Type.Integer(),
            createdAt: Millis(),
            expiresAt: Millis(),
            reply: Nullable(
              Type.Object({ id: Uuid, error: Nullable(ReplyErrorSchema), createdAt: Millis() }),
            ),
          }),
        ),
      }),
    },
  }),
  withdraw: routeSchema({
    summary: "Withdraw instructions",
    description:
      "Withdraws instructions that have not ended: each ends with a CANCELLED error reply, and a delivered one's " +
      "node is told to stop. Without `deliver` the replies are marked claimed (the caller is the coordinator " +
      "that stopped waiting); with `deliver: true` they are left for the run's coordinator to claim, so a " +
      "coordinator still waiting on the call hears of it (a withdraw from the dashboard or another principal).",
    tags: runs,
    auth: "admin",
    errors: ["RUN_NOT_FOUND"],
    params: idParams("run"),
    body: Type.Object(
      {
        ids: IdList,
        deliver: Type.Optional(
          Type.Boolean({
            description: "Leave the CANCELLED replies for the run's coordinator. (Default: false)",
          }),
        ),
      },
      strict,
    ),
    response: { 200: Type.Object({ withdrawn: Type.Array(Uuid) }) },
  }),
  queryInstructions: routeSchema({
    summary: "Read instructions by id",
    description: "Delivery status of instructions of the run; unknown ids are left out.",
    tags: runs,
    auth: "admin",
    errors: ["RUN_NOT_FOUND"],
    params: idParams("run"),
    body: Type.Object({ ids: IdList }, strict),
    response: { 200: Type.Object({ instructions: Type.Array(InstructionStatus) }) },
  }),
  queryReplies: routeSchema({
    summary: "Read replies by instruction",
    description:
      "The replies to these instructions, claimed or not (a coordinator recovering after a reconnect).",
    tags: runs,
    auth: "admin",
    errors: ["RUN_NOT_FOUND"],
    params: idParams("run"),
    body: Type.Object({ instructionIds: IdList }, strict),
    response: { 200: Type.Object({ replies: Type.Array(WireResultSchema) }) },
  }),
  claimReplies: routeSchema({
    summary: "Claim replies",
    description:
      "Hands out unclaimed replies of the run, each exactly once across replicas (the run stream does this " +
      "for its subscriber).",
    tags: runs,
    auth: "admin",
    errors: ["RUN_NOT_FOUND"],
    params: idParams("run"),
    body: Type.Object(
      {
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: "(Default: 1000)" })),
        instructionIds: Type.Optional(IdList),
      },
      strict,
    ),
    response: { 200: Type.Object({ replies: Type.Array(WireResultSchema) }) },
  }),
  createPrincipal: routeSchema({
    summary: "Create a principal token",
    description:
      "A stored credential for a person or service with a role, optionally limited to one tenant and expiring. " +
      "Its secret `flt_<id>.<secret>` is shown once (the store keeps a hash); revocation applies on every " +
      "replica at once. A tenant-scoped admin creates tokens of its own tenant only, never unscoped ones.",
    tags: principals,
    auth: "admin",
    body: Type.Object(
      {
        role: RoleSchema,
        tenant: Type.Optional(
          Type.Union([TenantName, Type.Null()], {
            description: `The one tenant it acts in; null: every tenant. ${TENANT_RULE} (Default: the creating token's tenant, null for an unscoped one)`,
          }),
        ),
        label: Type.Optional(Name({ examples: ["ci-reader"] })),
        ttlMs: Type.Optional(
          Type.Integer({
            minimum: 1000,
            maximum: 10 * 366 * 24 * 3_600_000,
            description: "(Default: never expires)",
          }),
        ),
      },
      { ...strict, examples: [{ role: "reader", tenant: "team-a", label: "grafana", ttlMs: 2_592_000_000 }] },
    ),
    response: {
      201: Type.Object({
        token: PrincipalTokenSchema,
        secret: Type.String({ description: "`flt_<id>.<secret>`: the bearer token, shown only here" }),
      }),
    },
  }),
  listPrincipals: routeSchema({
    summary: "List principal tokens",
    description:
      "Principal tokens newest first (never their secrets); a tenant-scoped admin sees its tenant's only.",
    tags: principals,
    auth: "admin",
    response: { 200: Type.Object({ tokens: Type.Array(PrincipalTokenSchema) }) },
  }),
  revokePrincipal: routeSchema({
    summary: "Revoke a principal token",
    description: "Refused from now on, on every replica (idempotent).",
    tags: principals,
    auth: "admin",
    errors: ["TOKEN_NOT_FOUND"],
    params: idParams("token"),
    response: { 200: Type.Object({ token: PrincipalTokenSchema }) },
  }),
  stats: routeSchema({
    summary: "Store and replica counters",
    description: "Counts of runs, nodes, instructions and replies in the store, and this replica's counters.",
    tags: ["operate"],
    auth: "admin",
    response: { 200: StatsSchema },
  }),
} as const;
