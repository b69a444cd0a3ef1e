import { readFileSync } from "node:fs";
import { join } from "node:path";
import swagger from "@fastify/swagger";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { CloseCode } from "../../protocol/close-codes.ts";
import { ErrorCodes, type ErrorName, errorCode } from "../../protocol/errors.ts";
import {
  AUTH_ERRORS,
  ERROR_CODES_KEY,
  errorResponses,
  routeSchema,
  SecuritySchemes,
} from "../../protocol/route-doc.ts";
import { sharedSchemas } from "../../protocol/schemas.ts";
import {
  ErrFrameSchema,
  EvtFrameSchema,
  FrameSchema,
  NodeStreamMessages,
  ReqFrameSchema,
  ResFrameSchema,
  RunStreamMessages,
  type StreamMessage,
} from "../../protocol/stream-schemas.ts";
import type { Access } from "./access.ts";

/** The OpenAPI extension naming what an operation needs (src/hub/http/access.ts `Access`). */
export const ACCESS_KEY = "x-access";

/** Where the document and the browsable reference are served. */
export const OPENAPI_PATH = "/openapi.json";
export const DOCS_PREFIX = "/docs";

const version = (() => {
  try {
    return (
      JSON.parse(readFileSync(join(import.meta.dirname, "../../../package.json"), "utf8")) as {
        version: string;
      }
    ).version;
  } catch {
    return "unknown";
  }
})();

const DESCRIPTION = `The HTTP API and the two WebSocket streams of a fleetlink hub replica; every replica serves the same API.

Every error answer has the body \`ErrorBody\` (\`{ "error": { "code", "message", "field"?, "definite"? } }\`); each
operation lists the \`FLEETLINK_E_…\` codes it may answer in its description and in \`${ERROR_CODES_KEY}\`, and the
full table with meanings is docs/errors.md. Bad input is refused with 400 \`FLEETLINK_E_INVALID_ARGUMENT\`
naming the field, never stripped or coerced. Credentials are checked before the body is read: none or an unknown
one gets 401, a known one of another role 403.

Hidden from this document: the reference UI's own routes (\`${DOCS_PREFIX}\`, its static assets, and
\`${DOCS_PREFIX}/json\` / \`${DOCS_PREFIX}/yaml\`, copies of this document), the dashboard's static assets, and the
HEAD routes Fastify adds for every GET. The streams are upgrade handlers outside the HTTP router; they are
described below as GET operations with their messages in \`x-websocket\` and their frames in components.`;

const TAGS = [
  { name: "operate", description: "Health, readiness, counters, metrics and this document" },
  { name: "nodes", description: "Enrollment, listing, approval and removal of worker nodes" },
  { name: "enrollment", description: "Stored enrollment tokens" },
  { name: "runs", description: "Runs, their instructions and replies" },
  {
    name: "checkpoints",
    description: "Host roles, checkpoint push/pull, standby takeover (with --checkpoint-store)",
  },
  { name: "streams", description: "The node and run WebSocket streams" },
  {
    name: "node",
    description:
      "The HTTP node API: a node's session over plain HTTP and JSON (open, long-poll instructions, the stream's " +
      "requests as POST /v1/node/<method>, close), served by the same code as the node stream",
  },
  { name: "dashboard", description: "The web dashboard's data feed" },
];

/** Named schemas under components.schemas, by title: shared shapes, frames, stream message bodies. */
const componentSchemas = (): Record<string, unknown> => {
  const out: Record<string, unknown> = {};
  const add = (s: { title?: string }) => {
    if (s.title) out[s.title] = s;
  };
  for (const s of sharedSchemas) add(s);
  for (const s of [FrameSchema, ReqFrameSchema, ResFrameSchema, ErrFrameSchema, EvtFrameSchema]) add(s);
  for (const m of [
    ...Object.values(NodeStreamMessages),
    ...Object.values(RunStreamMessages),
  ] as StreamMessage[]) {
    add(m.body as { title?: string });
    if (m.response) add(m.response as { title?: string });
  }
  return out;
};

const ref = (s: unknown) => {
  const title = (s as { title?: string }).title;
  return title ? { $ref: `#/components/schemas/${title}` } : s;
};

/** Error responses in final OpenAPI form (the routes' own go through @fastify/swagger's conversion). */
const openapiErrors = (codes: readonly ErrorName[]) => {
  const byStatus = new Map<number, ErrorName[]>();
  for (const c of codes)
    byStatus.set(ErrorCodes[c].status, [...(byStatus.get(ErrorCodes[c].status) ?? []), c]);
  return Object.fromEntries(
    [...byStatus].map(([status, cs]) => [
      String(status),
      {
        description: cs.map((c) => `\`${errorCode(c)}\`: ${ErrorCodes[c].text}`).join("; "),
        content: { "application/json": { schema: { $ref: "#/components/schemas/ErrorBody" } } },
      },
    ]),
  );
};

/** A sample frame carrying this message (its body from the body schema's first example, if any). */
const exampleFrame = (m: string, d: StreamMessage) => {
  const b = (d.body as { examples?: unknown[] }).examples?.[0] ?? (d.body.type === "array" ? [] : {});
  return d.kind === "event" ? { t: "evt", m, b } : { t: "req", id: "1", m, b };
};

const streamOperation = (o: {
  summary: string;
  description: string;
  security: string;
  access: Access;
  errors: ErrorName[];
  messages: Record<string, StreamMessage>;
  params?: unknown[];
}) => {
  const codes = o.errors;
  const table = Object.entries(o.messages)
    .map(([m, d]) => `- \`${m}\` (${d.kind}, ${d.from} → ${d.from === "hub" ? "peer" : "hub"}): ${d.summary}`)
    .join("\n");
  return {
    get: {
      summary: o.summary,
      description:
        `${o.description}\n\nMessages (the frame's \`m\`; bodies in \`b\`):\n${table}\n\nFrames: \`Frame\` in ` +
        `components. Limits: one frame ≤ payload limit + 64 KiB (close ${CloseCode.tooBig}); 5 malformed frames close the ` +
        `stream (${CloseCode.policy}).\n\nError codes at upgrade: ${codes.map((c) => `\`${errorCode(c)}\``).join(", ")}.`,
      tags: ["streams"],
      security: [{ [o.security]: [] }],
      [ACCESS_KEY]: o.access,
      parameters: [
        ...(o.params ?? []),
        { name: "Upgrade", in: "header", required: true, schema: { type: "string", enum: ["websocket"] } },
      ],
      [ERROR_CODES_KEY]: codes.map(errorCode),
      "x-websocket": {
        frame: { $ref: "#/components/schemas/Frame" },
        messages: Object.fromEntries(
          Object.entries(o.messages).map(([m, d]) => [
            m,
            {
              kind: d.kind,
              from: d.from,
              summary: d.summary,
              body: ref(d.body),
              example: exampleFrame(m, d),
              ...(d.response ? { response: ref(d.response) } : {}),
            },
          ]),
        ),
      },
      responses: {
        "101": { description: "Switching Protocols: the stream is open" },
        ...openapiErrors(codes),
      },
    },
  };
};

const streamPaths = () => ({
  "/v1/nodes/stream": streamOperation({
    summary: "Node stream",
    description:
      "A node's one stream (it dials out, so it may sit behind NAT). The node says `hello` first; the hub then " +
      "pushes `instruction` requests, the node answers each at once and sends `reply` when its handler is done, " +
      "`heartbeat` every interval and `progress` while handlers run. A newer stream of the same node replaces " +
      `this one (close ${CloseCode.replaced}); an unregistered node's stream closes with ${CloseCode.revoked}.`,
    security: "nodeCredential",
    access: "node",
    // Any credential but the node's own is simply unknown here: 401, never 403.
    errors: ["UNAUTHORIZED", "NODE_UNREGISTERED", "NODE_PENDING", "INVALID_ARGUMENT", "STORE_UNAVAILABLE"],
    messages: NodeStreamMessages,
  }),
  "/v1/runs/{run}/stream": streamOperation({
    summary: "Run stream",
    description:
      "A coordinator's subscription to a run: the hub pushes the run's replies as `replies` events, each " +
      "claimed exactly once across replicas; after a reconnect, read back missed ones with POST " +
      "/v1/runs/{run}/replies/query. Needs role admin or coordinator; a tenant-scoped token opens only its " +
      "tenant's runs (another tenant's run is RUN_NOT_FOUND).",
    security: "adminToken",
    access: "drive",
    errors: ["UNAUTHORIZED", "FORBIDDEN", "RUN_NOT_FOUND", "INVALID_ARGUMENT", "STORE_UNAVAILABLE"],
    messages: RunStreamMessages,
    params: [{ name: "run", in: "path", required: true, schema: { type: "string", format: "uuid" } }],
  }),
});

type Schema = Record<string, unknown> & {
  security?: Record<string, unknown>[];
  response?: Record<string, unknown>;
};

/**
 * Routes other modules add may list their error codes (`x-error-codes`) without describing the answers, or
 * list none: codes default to the auth errors their `security` implies (401, 403) plus INTERNAL, and every
 * listed code's status gets an error response with the error body.
 */
const withDefaultErrors = (schema: Schema | undefined): Schema | undefined => {
  if (!schema || schema.hide) return schema;
  const listed = schema[ERROR_CODES_KEY] as string[] | undefined;
  const codes = listed
    ? listed.map((c) => c.replace(/^FLEETLINK_E_/, "")).filter((c): c is ErrorName => c in ErrorCodes)
    : [...(schema.security?.length ? AUTH_ERRORS : []), "INTERNAL" as const];
  const errors = errorResponses(codes);
  return {
    ...schema,
    [ERROR_CODES_KEY]: listed ?? codes.map(errorCode),
    response: { ...errors, ...schema.response },
  };
};

/**
 * A tenant-scoped caller's `:run` of another tenant (or of none) is RUN_NOT_FOUND on every run route, whatever
 * else the route answers for a run it cannot find (the access hook checks it before the handler).
 */
const withTenantErrors = (schema: Schema | undefined, url: string, access: Access | undefined) => {
  const listed = schema?.[ERROR_CODES_KEY] as string[] | undefined;
  const code = errorCode("RUN_NOT_FOUND");
  if (!schema || schema.hide || !listed || !url.includes(":run") || access === "public" || access === "node")
    return schema;
  return listed.includes(code) ? schema : { ...schema, [ERROR_CODES_KEY]: [...listed, code] };
};

/**
 * Publishes the API: the OpenAPI 3.1 document at /openapi.json and a browsable reference at /docs (swagger-ui,
 * served from its own package: no CDN; loaded on the first request to /docs, see registerDocs). Call it before any route is declared: @fastify/swagger collects routes
 * with an onRoute hook, so routes queued before it are missed.
 */
export const registerOpenApi = (app: FastifyInstance): void => {
  void app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: { title: "fleetlink hub", version, description: DESCRIPTION },
      tags: TAGS,
      components: { securitySchemes: SecuritySchemes, schemas: componentSchemas() as never },
    },
    // Each operation says what it needs (`x-access`, the route's config.access): the isolation test reads it.
    transform: ({ schema, url, route }) => {
      const access = (route.config as { access?: Access } | undefined)?.access;
      const s = withDefaultErrors(withTenantErrors(schema as Schema, url, access));
      return { schema: (s && !s.hide ? { ...s, [ACCESS_KEY]: access } : s) as never, url };
    },
    transformObject: (doc) => {
      const o = (doc as { openapiObject: { paths: Record<string, unknown> } }).openapiObject;
      Object.assign(o.paths, streamPaths());
      return o as never;
    },
  });
  registerDocs(app);
  app.get(
    OPENAPI_PATH,
    {
      config: { access: "public" },
      schema: routeSchema({
        summary: "This document",
        description: "The OpenAPI 3.1 description of every route and stream of this hub. Browse it at /docs.",
        tags: ["operate"],
        auth: "none",
        response: { 200: Type.Unknown({ description: "An OpenAPI 3.1 document" }) },
      }),
    },
    async () => app.swagger(),
  );
};

/** Headers of one connection or of one encoding of the body: the outer reply sets its own. */
const HOP_HEADERS = new Set(["content-length", "transfer-encoding", "connection", "keep-alive"]);

/**
 * The reference UI at /docs, loaded on first use: @fastify/swagger-ui and the static-file server under it
 * (~35 modules, ~15 ms of every hub's start) are imported only when someone opens /docs. They run in a small
 * Fastify instance of their own, serving a copy of this hub's document, which the hidden /docs routes forward
 * to; what it answers (HTML, assets, redirects, CSP headers, 304s) is passed through unchanged.
 */
const registerDocs = (app: FastifyInstance): void => {
  let ui: Promise<FastifyInstance> | undefined;
  const load = async (): Promise<FastifyInstance> => {
    const [{ default: Fastify }, { default: swaggerUi }] = await Promise.all([
      import("fastify"),
      import("@fastify/swagger-ui"),
    ]);
    const inner = Fastify({ logger: false });
    // The outer app is ready (it is answering a request), so its document is complete.
    await inner.register(swagger, { mode: "static", specification: { document: app.swagger() as never } });
    await inner.register(swaggerUi, {
      routePrefix: DOCS_PREFIX,
      uiConfig: { docExpansion: "list", deepLinking: true, persistAuthorization: false },
      staticCSP: true,
    });
    await inner.ready();
    return inner;
  };
  const forward = async (req: FastifyRequest, reply: FastifyReply) => {
    ui ??= load().catch((e) => {
      ui = undefined; // a failed load (a file vanished mid-upgrade) is retried by the next request
      throw e;
    });
    const res = await (await ui).inject({
      // Fastify answers HEAD through the GET handler and drops the body itself, keeping its length.
      method: "GET",
      url: req.url,
      headers: req.headers,
    });
    if (res.statusCode === 404) return reply.callNotFound();
    for (const [k, v] of Object.entries(res.headers))
      if (v !== undefined && !HOP_HEADERS.has(k.toLowerCase())) reply.header(k, v);
    return reply.code(res.statusCode).send(res.rawPayload);
  };
  app.addHook("onClose", async () => {
    await (await ui?.catch(() => undefined))?.close();
  });
  // Declared as a plugin, like the routes of any other plugin: when the app gets ready, so that they inherit
  // every hook and the not-found handler the hub sets, and onRoute hooks added after this call see them.
  void app.register(async (scope) => {
    for (const url of [DOCS_PREFIX, `${DOCS_PREFIX}/*`])
      scope.route({
        method: "GET",
        url,
        schema: { hide: true },
        config: { access: "public" },
        handler: forward,
      });
  });
};
