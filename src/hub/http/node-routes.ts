import { type TObject, Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { FleetlinkError, invalid } from "../../protocol/errors.ts";
import { fromWireError } from "../../protocol/frames.ts";
import {
  DEFAULT_POLL_WAIT_MS,
  MAX_POLL_WAIT_MS,
  NODE_HTTP_METHODS,
  NODE_HTTP_PREFIX,
  NodeHttpOnly,
  SessionEndedSchema,
  SessionHandle,
} from "../../protocol/node-http-schemas.ts";
import { routeSchema } from "../../protocol/route-doc.ts";
import { NodeStreamMessages } from "../../protocol/stream-schemas.ts";
import type { NodeRecord } from "../../protocol/types.ts";
import type { Store } from "../../store/store.ts";
import type { Answer, Ended, HttpSession, HttpSessions } from "../delivery/http-sessions.ts";
import { authenticateNode } from "../delivery/upgrade.ts";
import { bearer, parseNodeToken } from "./auth.ts";

export interface NodeRoutesContext {
  store: Store;
  sessions: HttpSessions;
  /** Largest body of a stream request (a reply): the stream's frame limit, payload limit + envelope. */
  maxFrameBytes: number;
}

const TAG = "node";
/** Every request of a session may find it ended. */
const SESSION_ERRORS = ["SESSION_ENDED"] as const;
const ended410 = { 410: { ...SessionEndedSchema, description: "The session ended: act on `close.code`" } };

/** A stream body plus the session handle, for the OpenAPI document (the channel checks the stream part). */
const withSession = (body: TObject) => {
  const title = (body as { title?: string }).title ?? "Body";
  const examples = (body as { examples?: object[] }).examples ?? [{}];
  return Type.Object(
    { session: SessionHandle, ...body.properties },
    { title: `Http${title}`, examples: examples.map((e) => ({ session: "…", ...e })) },
  );
};

const sendEnded = (reply: FastifyReply, e: Ended) => {
  const err = new FleetlinkError(
    "SESSION_ENDED",
    `session ended (${e.code}${e.reason ? `: ${e.reason}` : ""}); act on close.code`,
  );
  return reply.code(410).send({ error: err.toJSON(), close: { code: e.code, reason: e.reason } });
};

/** The node's credential from the header (401 without one); its session by the body's handle. */
const sessionOf = (ctx: NodeRoutesContext, req: FastifyRequest): HttpSession | Ended => {
  const { nodeId, credential } = parseNodeToken(bearer(req.headers.authorization));
  const handle = (req.body as { session?: unknown } | null)?.session;
  if (typeof handle !== "string" || handle.length === 0 || handle.length > 100)
    throw invalid("session", "must be the handle POST /v1/node/open returned");
  return ctx.sessions.find(handle, nodeId, credential);
};

const answer = (reply: FastifyReply, a: Answer) => {
  if ("ended" in a) return sendEnded(reply, a.ended);
  if ("error" in a) throw fromWireError(a.error);
  return a.ok;
};

/**
 * The HTTP node API (src/protocol/node-http-schemas.ts): open, poll and close, and every stream request a
 * node makes at `POST /v1/node/<method>`. A session is a transport of the node streams (delivery/http-sessions.ts),
 * so each request is served by the stream's code and answered with the stream's answer or error.
 */
export const registerNodeRoutes = (app: FastifyInstance, ctx: NodeRoutesContext): void => {
  // Answers are encoded as they are (see registerRoutes): a schema must not filter them.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  const opened = new WeakMap<FastifyRequest, { node: NodeRecord; credentialHash: string }>();

  app.post(
    `${NODE_HTTP_PREFIX}/open`,
    {
      bodyLimit: 4096,
      config: { access: "node" },
      // The credential is checked before the body is read, as at the stream's upgrade.
      onRequest: async (req) => {
        opened.set(req, await authenticateNode(ctx.store, req.headers.authorization));
      },
      schema: routeSchema({
        summary: "Open an HTTP node session",
        description: NodeHttpOnly.open.summary,
        tags: [TAG],
        auth: "node",
        errors: ["NODE_UNREGISTERED", "NODE_PENDING"],
        body: { ...NodeHttpOnly.open.body, examples: [{}] },
        response: { 200: NodeHttpOnly.open.response },
      }),
    },
    async (req) => {
      const who = opened.get(req)!;
      const s = ctx.sessions.open(who.node, who.credentialHash);
      return { session: s.handle, maxWaitMs: MAX_POLL_WAIT_MS };
    },
  );

  app.post(
    `${NODE_HTTP_PREFIX}/poll`,
    {
      bodyLimit: ctx.maxFrameBytes,
      config: { access: "node" },
      schema: routeSchema({
        summary: "Long poll for instructions",
        description: NodeHttpOnly.poll.summary,
        tags: [TAG],
        auth: "node",
        errors: [...SESSION_ERRORS, "RATE_LIMITED"],
        body: NodeHttpOnly.poll.body,
        response: { 200: NodeHttpOnly.poll.response, ...ended410 },
      }),
    },
    async (req, reply) => {
      const s = sessionOf(ctx, req);
      if (!("handle" in s)) return sendEnded(reply, s);
      const b = req.body as { acks?: string[]; waitMs?: number };
      const p = s.poll(b.acks ?? [], b.waitMs ?? DEFAULT_POLL_WAIT_MS);
      // A client gone while parked unparks; its instructions stay queued, unacknowledged.
      reply.raw.once("close", p.cancel);
      const a = await p.answer;
      if ("ended" in a) return sendEnded(reply, a.ended);
      const { events, written } = s.offerEvents();
      // Kept until the session's next poll, if this answer reaches the socket in full ("finish"; not when its
      // client left or the connection broke first): an answer the node never reads must not lose a cancel.
      if (events.length > 0) reply.raw.once("finish", written);
      return { instructions: "ok" in a ? a.ok : [], ...(events.length > 0 ? { events } : {}) };
    },
  );

  app.post(
    `${NODE_HTTP_PREFIX}/close`,
    {
      bodyLimit: 4096,
      config: { access: "node" },
      schema: routeSchema({
        summary: "Close an HTTP node session",
        description: NodeHttpOnly.close.summary,
        tags: [TAG],
        auth: "node",
        errors: SESSION_ERRORS,
        body: NodeHttpOnly.close.body,
        response: { 200: NodeHttpOnly.close.response, ...ended410 },
      }),
    },
    async (req, reply) => {
      const s = sessionOf(ctx, req);
      if (!("handle" in s)) return sendEnded(reply, s);
      s.close(1000, "closed by the node");
      return { closed: true };
    },
  );

  for (const m of NODE_HTTP_METHODS) {
    const d = NodeStreamMessages[m];
    app.post(
      `${NODE_HTTP_PREFIX}/${m}`,
      {
        bodyLimit: ctx.maxFrameBytes,
        config: { access: "node" },
        // Only `session` is this route's: the stream body is checked by the channel (checkStreamRequest), so
        // a bad field is refused with the stream's error, naming it.
        validatorCompiler: () => () => true,
        schema: routeSchema({
          summary: `Stream request \`${m}\` over HTTP`,
          description: `${d.summary}\n\nThe body is the stream's \`${m}\` body plus \`session\`; the answer is the stream's.`,
          tags: [TAG],
          auth: "node",
          errors: [
            ...SESSION_ERRORS,
            ...(m === "hello" ? (["UNSUPPORTED_PROTOCOL"] as const) : []),
            ...(m === "reply" ? (["NOT_ADDRESSEE", "INSTRUCTION_ENDED", "RUN_MISMATCH"] as const) : []),
          ],
          body: withSession(d.body as TObject),
          response: { 200: d.response, ...ended410 },
        }),
      },
      async (req, reply) => {
        if (typeof req.body !== "object" || req.body === null || Array.isArray(req.body))
          throw invalid("body", "must be a JSON object");
        const s = sessionOf(ctx, req);
        if (!("handle" in s)) return sendEnded(reply, s);
        const { session: _, ...body } = req.body as Record<string, unknown>;
        return answer(reply, await s.request(m, body));
      },
    );
  }
};
