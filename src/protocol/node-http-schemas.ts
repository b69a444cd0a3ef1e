/**
 * The HTTP node API: the node stream (stream-schemas.ts) for nodes that have only an HTTP client and JSON.
 * A session is opened with `POST /v1/node/open` (the HTTP equivalent of the WebSocket upgrade: it checks the
 * node's credential), then every request a node makes on the stream is `POST /v1/node/<method>` with the
 * stream body plus `session`, answered with the stream's answer body; instructions come from long polls of
 * `POST /v1/node/poll`, acknowledged in the next poll. Same credentials, validation, limits and outcomes as
 * the stream, because the hub serves both through the same session code.
 */
import { Type } from "@sinclair/typebox";
import { Json, Uuid, WireErrorSchema, WireInstructionSchema } from "./schemas.ts";
import type { NodeStreamMessages } from "./stream-schemas.ts";

/** Where the HTTP node API lives on a hub. */
export const NODE_HTTP_PREFIX = "/v1/node";
/** Longest a poll may be parked, in ms; longer `waitMs` is refused. */
export const MAX_POLL_WAIT_MS = 30_000;
/** A poll's wait when it names none, in ms. */
export const DEFAULT_POLL_WAIT_MS = 20_000;
/** Polls parked at once on one replica, over all sessions, before new ones are refused (429). (Default) */
export const DEFAULT_MAX_PARKED_POLLS = 10_000;

/** An HTTP session handle, as `POST /v1/node/open` returned it. */
export const SessionHandle = Type.String({
  minLength: 1,
  maxLength: 100,
  description: "The session handle from POST /v1/node/open",
});

/** Stream requests a node makes, each offered at `POST /v1/node/<method>` with `session` in its body. */
export const NODE_HTTP_METHODS = [
  "hello",
  "heartbeat",
  "progress",
  "reply",
  "leave",
] as const satisfies readonly (keyof typeof NodeStreamMessages)[];
export type NodeHttpMethod = (typeof NODE_HTTP_METHODS)[number];

/** The HTTP-only requests, which have no stream counterpart. */
export const NodeHttpOnly = {
  open: {
    summary:
      "Opens an HTTP session for the node whose credential is in `Authorization: Bearer <nodeId>.<credential>` " +
      "(the HTTP equivalent of the stream's upgrade: refusals are the same). Say hello next.",
    body: Type.Object({}, { title: "OpenBody" }),
    response: Type.Object(
      {
        session: SessionHandle,
        maxWaitMs: Type.Integer({ description: "Longest poll wait this hub accepts, in ms" }),
      },
      { title: "OpenAnswer" },
    ),
  },
  poll: {
    summary:
      "Long poll for instructions: answers at once with the instructions delivered to this session and not yet " +
      "acknowledged, else as soon as one is pushed, else empty after `waitMs`. `acks` acknowledges instructions " +
      "received in earlier answers (a node acknowledges each at once, in its next poll); an unacknowledged one " +
      "comes again in the next answer (the same instruction: run it once). A newer poll of the session answers an " +
      "older parked one empty. Polling is the session's sign of life: a session with no poll for the ping interval " +
      "ends and its leases are given back, as a dead stream's. `events` carries the stream's events for the node " +
      "(`cancel`), repeated until a later poll of the session follows an answer that carried them (an event may come twice: ignore ids already handled); an answer with events but no instructions comes at once.",
    body: Type.Object(
      {
        session: SessionHandle,
        acks: Type.Optional(Type.Array(Uuid, { maxItems: 100_000 })),
        waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_POLL_WAIT_MS })),
      },
      { title: "PollBody", examples: [{ session: "…", acks: [], waitMs: DEFAULT_POLL_WAIT_MS }] },
    ),
    response: Type.Object(
      {
        instructions: Type.Array(WireInstructionSchema),
        events: Type.Optional(
          Type.Array(
            Type.Object({
              m: Type.String({ description: "The event, as an evt frame's m (cancel)" }),
              b: Json("Its body, as on the stream"),
            }),
            { description: "Events for the node, in order (absent when there are none)" },
          ),
        ),
      },
      { title: "PollAnswer" },
    ),
  },
  close: {
    summary:
      "Ends the session as a closed stream ends (its leases are given back); a leaving node says `leave` first.",
    body: Type.Object({ session: SessionHandle }, { title: "CloseBody" }),
    response: Type.Object({ closed: Type.Literal(true) }, { title: "CloseAnswer" }),
  },
} as const;

/**
 * The answer (410, SESSION_ENDED) to any request of a session that ended: `close` is what a stream would
 * have been closed with (CloseCode: 4000 replaced, 4001 revoked, 4002 unsupported protocol, 1001 the
 * replica does not know the session, e.g. after a restart) and the node acts on it as on that close code.
 */
export const SessionEndedSchema = Type.Object(
  {
    error: WireErrorSchema,
    close: Type.Object({ code: Type.Integer(), reason: Type.String() }),
  },
  { title: "SessionEnded" },
);
