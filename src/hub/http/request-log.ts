import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { NODE_HTTP_PREFIX } from "../../protocol/node-http-schemas.ts";
import type { HttpMetrics } from "./metrics.ts";

/** Polled by orchestrators and Prometheus every few seconds: logged at debug so they do not flood the log. */
const QUIET_ROUTES: ReadonlySet<string> = new Set(["/healthz", "/readyz", "/metrics"]);
/**
 * An HTTP node's polls, heartbeats, progress and replies are a stream's frames, which log no line each: at debug.
 * Its sessions' open and close stay at info, as a stream's connect and close do.
 */
const quiet = (route: string): boolean =>
  QUIET_ROUTES.has(route) ||
  (route.startsWith(`${NODE_HTTP_PREFIX}/`) &&
    route !== `${NODE_HTTP_PREFIX}/open` &&
    route !== `${NODE_HTTP_PREFIX}/close`);
/** The route label of requests no route matched: never the raw URL, so label values stay bounded. */
const UNMATCHED = "unmatched";

/** Longest `x-request-id` honoured. */
export const MAX_REQUEST_ID_CHARS = 128;
/** Visible ASCII only: no spaces or control characters that could split or forge a log line or header. */
const REQUEST_ID = new RegExp(`^[\\x21-\\x7e]{1,${MAX_REQUEST_ID_CHARS}}$`);

/**
 * The caller's `x-request-id`, when it is one header of 1 to 128 visible ASCII characters; anything else
 * (absent, repeated, too long, spaces, control or non-ASCII characters) is ignored and the hub's own id is used.
 */
export const requestIdOf = (header: unknown): string | undefined =>
  typeof header === "string" && REQUEST_ID.test(header) ? header : undefined;

/**
 * One log line per HTTP request, on completion (Fastify's own request logging is off): request id (the caller's
 * `x-request-id` when acceptable, see requestIdOf; echoed as the `x-request-id` answer header either way), method,
 * route pattern, status, duration, client address, and the node and run ids from the path when present.
 * Headers, query strings and bodies are never logged (they carry tokens and payloads). With `metrics`, the
 * same hook counts and times the request by route pattern. WebSocket streams are not HTTP requests here:
 * the node and run streams log their own lifecycle.
 */
export const registerRequestLog = (
  app: FastifyInstance,
  o: { log: Logger; metrics: HttpMetrics | undefined },
): void => {
  // First hook of all (registered before the routes and their access checks): a refused request is still
  // logged and answered under the caller's id.
  app.addHook("onRequest", async (req, reply) => {
    const id = requestIdOf(req.headers["x-request-id"]);
    if (id !== undefined) req.id = id;
    reply.header("x-request-id", req.id);
  });
  app.addHook("onResponse", async (req, reply) => {
    const route = req.routeOptions.url ?? UNMATCHED;
    const seconds = reply.elapsedTime / 1000;
    if (o.metrics) {
      o.metrics.requests.inc({ method: req.method, route, status: String(reply.statusCode) });
      o.metrics.duration.observe({ method: req.method, route }, seconds);
    }
    const level = quiet(route) ? "debug" : "info";
    if (!o.log.isLevelEnabled(level)) return;
    const params = (req.params ?? {}) as Record<string, unknown>;
    const line: Record<string, unknown> = {
      reqId: req.id,
      method: req.method,
      route,
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 10) / 10,
      ip: req.ip,
    };
    if (typeof params.node === "string") line.nodeId = params.node;
    if (typeof params.run === "string") line.runId = params.run;
    o.log[level](line, "request");
  });
};
