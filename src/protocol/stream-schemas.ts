/**
 * The two WebSocket streams, described once: the frame envelope every message travels in, and the body of
 * each request, answer and event. parseFrame (frames.ts) checks envelopes with these schemas and
 * checkStreamRequest checks bodies, both through TypeBox's compiler (compiled once, at load); the OpenAPI
 * document publishes them as components.
 *
 * Stream bodies accept properties they do not know (unlike HTTP bodies): during a rolling upgrade a newer
 * agent may talk to an older hub, and a stream has no status line to refuse it with.
 */
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import { type TypeCheck, TypeCompiler } from "@sinclair/typebox/compiler";
import { type ValueError, ValueErrorType } from "@sinclair/typebox/errors";
import { type FleetlinkError, invalid } from "./errors.ts";
import { MAX_CALLS_PER_PUSH, MAX_ITEMS_PER_CALL } from "./limits.ts";
import {
  Json,
  Millis,
  NewInstructionSchema,
  Nullable,
  ReplyErrorSchema,
  Traceparent,
  Uuid,
  WireErrorSchema,
  WireInstructionSchema,
  WireResultSchema,
} from "./schemas.ts";

const EXAMPLE_ID = "01939a5e-8c2a-7b4e-9f1d-3c5a7e9b2d41";
/** Frame ids and method names: 1 to 200 characters. */
const FrameText = Type.String({ minLength: 1, maxLength: 200 });
const Body = Type.Optional(Json("The body: see the stream's methods"));

export const ReqFrameSchema = Type.Object(
  { t: Type.Literal("req"), id: FrameText, m: FrameText, b: Body },
  {
    title: "ReqFrame",
    description: "A call; the peer answers with exactly one res or err frame of the same id",
  },
);
export const ResFrameSchema = Type.Object(
  { t: Type.Literal("res"), id: FrameText, b: Body },
  { title: "ResFrame", description: "The answer to the req frame with this id" },
);
export const ErrFrameSchema = Type.Object(
  { t: Type.Literal("err"), id: Type.Optional(FrameText), e: WireErrorSchema },
  {
    title: "ErrFrame",
    description: "The error answer to the req frame with this id; without id, it reports a malformed frame",
  },
);
export const EvtFrameSchema = Type.Object(
  { t: Type.Literal("evt"), m: FrameText, b: Body },
  { title: "EvtFrame", description: "A one-way message" },
);
export const FrameSchema = Type.Union([ReqFrameSchema, ResFrameSchema, ErrFrameSchema, EvtFrameSchema], {
  title: "Frame",
  description: "Every message on a fleetlink stream is one JSON text frame of one of these shapes",
});

/** Who the node is, as software: shown in `GET /v1/nodes`, `fleetlink nodes list` and the dashboard. */
export const AgentSchema = Type.Object(
  {
    name: Type.String({
      minLength: 1,
      maxLength: 100,
      description: "The node implementation (fleetlink-ts, fleetlink-py…)",
    }),
    version: Type.String({ minLength: 1, maxLength: 100, description: "Its version" }),
  },
  { title: "Agent" },
);

const HeartbeatInterval = Type.Optional(
  Type.Integer({
    minimum: 100,
    maximum: 3_600_000,
    description: "The interval the hub judges this node's liveness by from now on, in ms",
  }),
);

/** Who sends a message: a request one side serves (`req`, answered with `res`), or an event (`evt`). */
export interface StreamMessage {
  kind: "request" | "event";
  from: "node" | "hub" | "coordinator";
  summary: string;
  body: TSchema;
  /** The `res` body (requests only). */
  response?: TSchema;
}

const msg = <const M extends StreamMessage>(m: M) => m;

/** The node stream (`GET /v1/nodes/stream`, node credential), by method. */
export const NodeStreamMessages = {
  hello: msg({
    kind: "request",
    from: "node",
    summary:
      "First request on every stream: makes it the node's session, keeps the leases of `inflight` and gives " +
      "back the rest.",
    body: Type.Object(
      {
        inflight: Type.Optional(
          Type.Array(Uuid, { maxItems: 100_000, description: "Instructions the node still works on" }),
        ),
        heartbeatIntervalMs: HeartbeatInterval,
        protocol: Type.Optional(
          Type.Integer({
            minimum: 1,
            maximum: 1_000_000,
            description:
              "The node protocol version the node speaks. (Default: 1, for nodes older than versioning)",
          }),
        ),
        agent: Type.Optional(AgentSchema),
        features: Type.Optional(
          Type.Array(Type.String({ maxLength: 100 }), {
            maxItems: 100,
            description:
              "Optional parts of the protocol this node speaks (WebSocket stream only): `instructions`, " +
              "instructions arrive as batched `instructions` events, not acknowledged one by one",
          }),
        ),
      },
      {
        title: "HelloBody",
        examples: [
          {
            inflight: [],
            heartbeatIntervalMs: 5000,
            protocol: 1,
            agent: { name: "fleetlink-py", version: "0.1.0" },
          },
        ],
      },
    ),
    response: Type.Object(
      {
        nodeId: Uuid,
        name: Type.Optional(
          Type.String({
            description:
              "The name the node enrolled with (absent from older hubs): an agent started under another name stops and says so",
          }),
        ),
        onlineUntil: Nullable(Millis()),
        maxInflight: Type.Integer({ description: "Instructions in flight to this node at most" }),
        maxPayloadBytes: Type.Integer({ description: "Largest reply payload the hub stores" }),
        leaseMs: Type.Integer({
          description: "Lease of a delivered instruction; report progress before it ends",
        }),
        protocol: Type.Integer({ description: "The protocol version of this session (the node's)" }),
        protocols: Type.Array(Type.Integer(), { description: "Every protocol version this hub accepts" }),
        features: Type.Array(Type.String(), {
          description:
            "Optional parts of the protocol this hub supports (progress, leave, http, cancel, blobs, blob-urls, instructions)",
        }),
        hub: Type.Object({ version: Type.String({ description: "The hub's fleetlink version" }) }),
        pingIntervalMs: Type.Integer({
          description:
            "The hub's dead-peer interval, in ms: a stream silent for 1.25 × this (or, after hello, for 1.25 × its " +
            "heartbeat interval when that is longer), or an HTTP session that has not polled for 1.25 × this, is " +
            "dropped and its leases given back",
        }),
      },
      { title: "HelloAnswer" },
    ),
  }),
  heartbeat: msg({
    kind: "request",
    from: "node",
    summary: "Keeps the node online until now + 2 × interval.",
    body: Type.Object(
      { heartbeatIntervalMs: HeartbeatInterval },
      { title: "HeartbeatBody", examples: [{ heartbeatIntervalMs: 5000 }] },
    ),
    response: Type.Object({ onlineUntil: Nullable(Millis()) }, { title: "HeartbeatAnswer" }),
  }),
  progress: msg({
    kind: "request",
    from: "node",
    summary: "These instructions' handlers are still running: extend their leases.",
    body: Type.Object(
      { ids: Type.Array(Uuid, { maxItems: 100_000 }) },
      { title: "ProgressBody", examples: [{ ids: [EXAMPLE_ID] }] },
    ),
    response: Type.Object({ extended: Type.Array(Uuid) }, { title: "ProgressAnswer" }),
  }),
  reply: msg({
    kind: "request",
    from: "node",
    summary:
      "A handler's result or error. `id` is chosen by the node, so a resent reply is recognised (answered " +
      "`duplicate: true`); the node resends until it gets an answer or a definite error. On a WebSocket the hub " +
      "may hold a successful answer up to 5 ms, to send it with the next frame to the node (resend timeouts are " +
      "seconds).",
    body: Type.Object(
      {
        id: Uuid,
        runId: Uuid,
        replyTo: Uuid,
        payload: Type.Optional(Json("The handler's result")),
        error: Type.Optional(Nullable(ReplyErrorSchema)),
        traceparent: Type.Optional(
          Traceparent(
            "The handler's trace context (its span's, else the instruction's), for the coordinator",
          ),
        ),
      },
      {
        title: "ReplyBody",
        examples: [{ id: EXAMPLE_ID, runId: EXAMPLE_ID, replyTo: EXAMPLE_ID, payload: 49 }],
      },
    ),
    response: Type.Object(
      {
        ok: Type.Literal(true),
        duplicate: Type.Boolean(),
        replacedBy: Type.Optional(
          Type.String({ description: "The error code stored instead of a result the store cannot take" }),
        ),
      },
      { title: "ReplyAnswer" },
    ),
  }),
  leave: msg({
    kind: "request",
    from: "node",
    summary:
      "The node is leaving for good (a graceful stop, after its replies are acknowledged): the hub marks it " +
      "offline at once (calls to it end NODE_UNAVAILABLE now, not after its heartbeat window), gives back " +
      "the instructions still leased to it, and ends the session; the node then closes the stream (1000).",
    body: Type.Object({}, { title: "LeaveBody", examples: [{}] }),
    response: Type.Object({ left: Type.Literal(true) }, { title: "LeaveAnswer" }),
  }),
  instruction: msg({
    kind: "request",
    from: "hub",
    summary: "Hub → node: run this handler; the node acknowledges at once and replies later with `reply`.",
    body: WireInstructionSchema,
    response: Type.Object({ accepted: Type.Literal(true) }, { title: "InstructionAnswer" }),
  }),
  instructions: msg({
    kind: "event",
    from: "hub",
    summary:
      "Hub → node, instead of `instruction` requests when the node's hello listed the `instructions` feature " +
      "(WebSocket stream only): the instructions delivered to it in one go, in order, not acknowledged " +
      "(the reply is the answer; one lost with the stream is given back when the stream ends, as any other).",
    body: Type.Object(
      { items: Type.Array(WireInstructionSchema, { minItems: 1, description: "The instructions to run" }) },
      { title: "InstructionsEvent" },
    ),
  }),
  cancel: msg({
    kind: "event",
    from: "hub",
    summary:
      "Hub → node: these delivered instructions ended before the node replied (withdrawn, call cancelled, " +
      "expired, out of attempts, node unavailable). The node stops their handlers (aborts their signal) and " +
      "sends no reply for them, dropping one already queued; a reply sent anyway is refused INSTRUCTION_ENDED. " +
      "Ids the node does not know are ignored. Sent only by hubs whose hello answer lists the `cancel` feature.",
    body: Type.Object(
      {
        ids: Type.Array(Uuid, { minItems: 1, maxItems: 100_000, description: "The instructions that ended" }),
        code: Type.String({
          minLength: 1,
          maxLength: 100,
          description:
            "Why they ended, one error code per event (FLEETLINK_E_CANCELLED, …_MESSAGE_EXPIRED, …)",
        }),
      },
      {
        title: "CancelEvent",
        examples: [{ ids: [EXAMPLE_ID], code: "FLEETLINK_E_CANCELLED" }],
      },
    ),
  }),
} as const;

/** The run stream (`GET /v1/runs/:run/stream`, admin token), by event. */
export const RunStreamMessages = {
  replies: msg({
    kind: "event",
    from: "hub",
    summary: "Hub → coordinator: replies of the run, each delivered once (claimed right before it is sent).",
    body: Type.Array(WireResultSchema, { title: "RepliesEvent" }),
  }),
  push: msg({
    kind: "request",
    from: "coordinator",
    summary:
      "Coordinator → hub: push the instructions of one or more calls (the SDK puts the calls of one turn of its " +
      "event loop in one frame). Each call is checked, pushed (all or none) and answered on its own, as " +
      "`POST /v1/runs/:run/instructions` would: one bad call fails only itself.",
    body: Type.Object(
      {
        calls: Type.Array(
          Type.Object({
            items: Type.Array(NewInstructionSchema, { minItems: 1, maxItems: MAX_ITEMS_PER_CALL }),
          }),
          { minItems: 1, maxItems: MAX_CALLS_PER_PUSH },
        ),
      },
      { title: "PushBody" },
    ),
    response: Type.Object(
      {
        results: Type.Array(
          Type.Union([
            Type.Object({
              instructions: Type.Array(Type.Object({ id: Uuid, dst: Uuid, expiresAt: Millis() })),
            }),
            Type.Object({ error: WireErrorSchema }),
          ]),
        ),
      },
      { title: "PushAnswer" },
    ),
  }),
  withdraw: msg({
    kind: "request",
    from: "coordinator",
    summary: "Coordinator → hub: withdraw undelivered instructions (as `POST …/instructions/withdraw`).",
    body: Type.Object(
      { ids: Type.Array(Uuid, { minItems: 1, maxItems: 100_000 }) },
      { title: "WithdrawBody" },
    ),
    response: Type.Object({ withdrawn: Type.Array(Uuid) }, { title: "WithdrawAnswer" }),
  }),
} as const;

export const StreamMessages = { node: NodeStreamMessages, run: RunStreamMessages } as const;
export type StreamName = keyof typeof StreamMessages;
export type NodeStreamBody<M extends keyof typeof NodeStreamMessages> = Static<
  (typeof NodeStreamMessages)[M]["body"]
>;

/** The first error of a failed check, as INVALID_ARGUMENT naming the field (`e.code`, `ids.0`). */
export const checkError = (check: TypeCheck<TSchema>, value: unknown, prefix = ""): FleetlinkError => {
  const first = deepest(check.Errors(value).First());
  const path = first?.path.slice(1).replace(/\//g, ".") ?? "";
  const field = prefix && path ? `${prefix}.${path}` : prefix || path || "b";
  return invalid(field, first ? describe(first) : "is malformed");
};

/** In a union (a nullable object), the branch error that goes deepest says the most. */
const deepest = (e: ValueError | undefined): ValueError | undefined => {
  if (!e || e.type !== ValueErrorType.Union) return e;
  let best: ValueError | undefined;
  for (const it of e.errors) {
    const sub = deepest(it.First());
    if (sub && (!best || sub.path.length > best.path.length)) best = sub;
  }
  return best && best.path.length > e.path.length ? best : e;
};

const describe = (e: ValueError): string => {
  if (e.type === ValueErrorType.ObjectRequiredProperty) return "is required";
  if (e.schema.format === "uuid") return "must be a UUID";
  if (e.type === ValueErrorType.StringMinLength || e.type === ValueErrorType.StringMaxLength)
    return `must be a string of ${e.schema.minLength ?? 0} to ${e.schema.maxLength ?? "any"} characters`;
  return e.message.charAt(0).toLowerCase() + e.message.slice(1);
};

// Compiled once: frame and body checks run on the hot path.
const compiled = Object.fromEntries(
  Object.entries(StreamMessages).map(([stream, methods]) => [
    stream,
    Object.fromEntries(Object.entries(methods).map(([m, d]) => [m, TypeCompiler.Compile(d.body)])),
  ]),
) as Record<StreamName, Record<string, TypeCheck<TSchema>>>;
const objectBody = new Set(
  Object.values(StreamMessages).flatMap((ms) =>
    Object.values(ms)
      .filter((d) => d.body.type === "object")
      .map((d) => d.body),
  ),
);

/**
 * Checks the body of a request or event on a stream; returns it (the same object, not a copy). A missing
 * body reads as `{}` for methods whose body is an object. Throws INVALID_ARGUMENT naming the field (`m` for an
 * unknown method).
 */
export const checkStreamRequest = (stream: StreamName, method: string, body: unknown): unknown => {
  const methods = StreamMessages[stream] as Record<string, StreamMessage>;
  const check = Object.hasOwn(methods, method) ? compiled[stream][method] : undefined;
  if (!check) throw invalid("m", `unknown method ${method.slice(0, 200)} on the ${stream} stream`);
  const v = body == null && objectBody.has(methods[method]!.body) ? {} : body;
  if (!check.Check(v)) throw checkError(check, v);
  return v;
};
