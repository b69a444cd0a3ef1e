import { readFile } from "node:fs/promises";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
// The OpenAPI fields of route schemas (summary, tags, security, hide).
import type {} from "@fastify/swagger";
import { type TSchema, Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { Checkpoints } from "../../checkpoint/orchestrator.ts";
import { FleetlinkError } from "../../protocol/errors.ts";
import { routeSchema } from "../../protocol/route-doc.ts";
import type { Store } from "../../store/store.ts";
import type { Logger } from "../../stream/channel.ts";
import { Presence } from "../delivery/presence.ts";
import { type AccessContext, authenticate } from "../http/access.ts";
import { principalOf } from "../http/principal.ts";
import { registerDashboardReads } from "./details.ts";
import type { Recheck } from "./feed.ts";
import { Feeds } from "./feed.ts";
import { Rates } from "./rates.ts";
import { SnapshotBuilder } from "./snapshot.ts";

export interface DashboardOptions {
  store: Store;
  /**
   * The hub's credentials, to check an open feed's stored token again (revoked or expired: the feed ends). The
   * access hook authorizes the request itself, by `config.access`. (Default: feeds are not checked again)
   */
  access?: AccessContext;
  /** This replica's id. */
  replica: string;
  /** This replica's node streams and reply streams (what is connected here). */
  nodes: { connectedIds(): string[]; readonly inflight: number };
  runs: { readonly subscribers: number };
  checkpoints: Checkpoints | undefined;
  log: Logger;
  /** In-flight instructions per node connected here, when the node streams can say. (Default: not shown) */
  inflightByNode?: () => ReadonlyMap<string, number>;
  /** Where this replica listens, once it does (shown in the replicas table). (Default: not shown) */
  address?: () => string | undefined;
  /** The built front end. (Default: web/dist of this package) */
  webRoot?: string;
  /** Live feeds open at once on this replica. (Default: 32) */
  maxFeeds?: number;
  /** Least time between two feed updates, in ms. (Default: 250) */
  minIntervalMs?: number;
  /** Keep-alive comment interval of the feed, in ms. (Default: 15000) */
  keepAliveMs?: number;
  /** Bytes a feed client may leave unread before it is dropped. (Default: 1 MiB) */
  maxBufferedBytes?: number;
  /** How often this replica rewrites its presence record, in ms. (Default: 5000) */
  presenceIntervalMs?: number;
  /** How often the rate charts are sampled, in ms; an hour's worth of samples is kept. (Default: 10000) */
  rateIntervalMs?: number;
}

/** src/hub and dist/hub are both two levels below the package root. */
const DEFAULT_WEB_ROOT = fileURLToPath(new URL("../../../web/dist/", import.meta.url));
const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;
const TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff2": "font/woff2",
  ".map": "application/json",
};
/** The page loads only its own scripts and styles and talks only to its own hub. */
const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-cache",
  "content-security-policy":
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
} as const;

const MISSING_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fleetlink: dashboard not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto">
<h1>The dashboard is not built</h1>
<p>This hub is running, but its web bundle (<code>web/dist</code>) is missing. From a checkout, run</p>
<pre>npm run build:web</pre>
<p>and reload this page (<code>npm ci</code> builds it too). The API under <code>/v1</code> works without it.</p>
</body></html>
`;

const errorReply = (reply: FastifyReply, e: FleetlinkError) =>
  reply.code(e.status).send({ error: e.toJSON() });

/** Static tokens live as long as the hub: only stored ones (revocable, expiring) are checked again. */
const STATIC = new Set(["admin-token", "metrics-token", "enroll-token"]);

const recheckOf = (
  access: AccessContext | undefined,
  id: string,
  authorization: string | string[] | undefined,
  address: string,
): Recheck | undefined =>
  access === undefined || STATIC.has(id)
    ? undefined
    : async () => {
        try {
          await authenticate(access, authorization, address);
          return null;
        } catch (e) {
          // Revoked, expired, or gone: the feed ends; anything else (the store is down) is not a verdict.
          if (e instanceof FleetlinkError && e.kind === "UNAUTHORIZED")
            return { status: 401, message: e.message };
          throw e;
        }
      };

/**
 * The web dashboard: the page and its assets at `/`, and `GET /v1/events`, a live feed of what the page shows
 * (Server-Sent Events). Every replica serves it; what one replica cannot see itself (which nodes are on other
 * replicas) comes from the presence records each replica keeps in the shared store.
 */
export const registerDashboard = (app: FastifyInstance, o: DashboardOptions): void => {
  const root = o.webRoot ?? DEFAULT_WEB_ROOT;
  // Node connects and closes here raise no store event: presence notices them within a second.
  let onLocalChange = () => {};
  const presence = new Presence({
    onLocalChange: () => onLocalChange(),
    store: o.store,
    id: o.replica,
    log: o.log,
    intervalMs: o.presenceIntervalMs,
    local: () => ({
      nodes: o.nodes.connectedIds(),
      inflight: o.nodes.inflight,
      runStreams: o.runs.subscribers,
      inflightByNode: o.inflightByNode?.(),
      address: o.address?.(),
    }),
  });
  const snapshots = new SnapshotBuilder({
    store: o.store,
    replica: o.replica,
    presence,
    checkpoints: o.checkpoints,
    inflightByNode: o.inflightByNode,
  });
  const feeds = new Feeds({
    source: { base: (tenant) => snapshots.base(tenant), run: (id, tenant) => snapshots.run(id, tenant) },
    log: o.log,
    maxFeeds: o.maxFeeds,
    minIntervalMs: o.minIntervalMs,
    keepAliveMs: o.keepAliveMs,
    maxBufferedBytes: o.maxBufferedBytes,
  });
  onLocalChange = () => feeds.changed();
  // Store events (pushes, replies, sweeps here; another replica's commits that it announces: work for other
  // replicas, sessions, presence records) are reasons to update; the feed folds them to at most one per interval,
  // and refreshes every 2 s for what raises none (heartbeats, approvals, a node falling silent, another
  // PostgreSQL replica's calls that began and ended there).
  const unwatch = o.store.watch(() => feeds.changed());
  presence.start();
  const rateIntervalMs = o.rateIntervalMs ?? 10_000;
  const rates = new Rates({
    store: o.store,
    log: o.log,
    intervalMs: rateIntervalMs,
    size: Math.max(1, Math.ceil(3_600_000 / rateIntervalMs)),
  });
  rates.start();
  registerDashboardReads(app, { store: o.store, rates });
  app.addHook("preClose", async () => {
    await rates.stop();
    unwatch();
    feeds.close();
    await presence.stop();
  });

  app.get(
    "/",
    {
      config: { access: "public" },
      schema: {
        summary: "The web dashboard",
        description:
          "The dashboard page (log in with an admin, coordinator or reader token; it reads GET /v1/events). 503 " +
          "with a page saying " +
          "to run `npm run build:web` when the bundle is missing.",
        tags: ["dashboard"],
        security: [],
        // A page, not an API operation: left out of the OpenAPI document like the assets.
        hide: true,
      },
    },
    async (_req, reply) => {
      try {
        return reply.headers(PAGE_HEADERS).send(await readFile(join(root, "index.html")));
      } catch {
        return reply.code(503).headers(PAGE_HEADERS).send(MISSING_PAGE);
      }
    },
  );

  app.get(
    "/assets/:file",
    {
      config: { access: "public" },
      schema: {
        summary: "A dashboard asset (hashed name, cached for a year)",
        tags: ["dashboard"],
        security: [],
        hide: true,
        params: {
          type: "object",
          required: ["file"],
          additionalProperties: false,
          properties: { file: { type: "string", maxLength: 200 } },
        },
      },
    },
    async (req, reply) => {
      const { file } = req.params as { file: string };
      const type = TYPES[extname(file)];
      const notFound = new FleetlinkError("ROUTE_NOT_FOUND", `no asset ${file.slice(0, 200)}`, {
        field: "path",
      });
      if (!ASSET_NAME.test(file) || !type) return errorReply(reply, notFound);
      let body: Buffer;
      try {
        body = await readFile(join(root, "assets", file));
      } catch {
        return errorReply(reply, notFound);
      }
      // Vite names assets by their content hash: a new build gets new names, so they can be kept forever.
      return reply
        .headers({
          "content-type": type,
          "cache-control": "public, max-age=31536000, immutable",
          "x-content-type-options": "nosniff",
        })
        .send(body);
    },
  );

  app.get(
    "/v1/events",
    {
      config: { access: "read" },
      bodyLimit: 1024,
      schema: routeSchema({
        summary: "Live dashboard feed (Server-Sent Events)",
        description:
          "`text/event-stream`: a `snapshot` event (one JSON document: fleet counts, replicas, nodes, runs " +
          "with their calls' outcomes, checkpoints, and with `?run=` that run's calls node by node) on connect " +
          "and after each change, at most 4 per second; `: keep-alive` comments every 15 s; a `problem` event " +
          "when the store cannot be read. A client that leaves 1 MiB unread is dropped; 32 feeds per replica " +
          "(429 RATE_LIMITED beyond). Read it with fetch (the Authorization header) rather than EventSource. " +
          "A tenant's token sees only its tenant's nodes, runs and checkpoints (a `?run=` of another tenant is " +
          "404 RUN_NOT_FOUND); admin, coordinator and reader tokens may read it. A stored token revoked or " +
          "expired while its feed is open ends the feed within 2 s with a `refused` event (`{ status, message }`). " +
          "See docs/dashboard.md.",
        tags: ["dashboard"],
        auth: "admin",
        errors: ["RUN_NOT_FOUND", "RATE_LIMITED"],
        querystring: Type.Object(
          { run: Type.Optional(Type.String({ format: "uuid", description: "Include this run's calls" })) },
          { additionalProperties: false },
        ),
        response: {
          200: {
            description: "An event stream of `snapshot` events",
            content: { "text/event-stream": { schema: { type: "string" } } },
          } as unknown as TSchema,
        },
      }),
    },
    async (req, reply) => {
      const runId = (req.query as { run?: string }).run ?? null;
      const p = principalOf(req);
      const { tenant } = p;
      if (runId !== null) {
        const run = await o.store.getRun(runId);
        // Another tenant's run reads as one that does not exist.
        if (tenant !== null && run.tenant !== tenant)
          throw new FleetlinkError("RUN_NOT_FOUND", `no run ${runId}`);
      }
      feeds.admit();
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no", // nginx: pass events through as they come
        connection: "keep-alive",
      });
      res.on("error", () => res.destroy());
      req.raw.socket.setNoDelay(true);
      feeds.open(res, runId, tenant, recheckOf(o.access, p.id, req.headers.authorization, req.ip));
    },
  );
};
