import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import pino from "pino";
import { WebSocketServer } from "ws";
import { type ObjectStore, openObjectStore } from "../checkpoint/object-store.ts";
import { Checkpoints } from "../checkpoint/orchestrator.ts";
import { FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import { MAX_FRAME_BYTES } from "../protocol/frames.ts";
import { isId, newId } from "../protocol/ids.ts";
import type { Store } from "../store/store.ts";
import { wsTransport } from "../stream/ws.ts";
import { bearer, hashCredential, parseNodeToken, sameSecret } from "./auth.ts";
import { registerCheckpointRoutes } from "./checkpoint-routes.ts";
import { NodeStreams } from "./node-streams.ts";
import { registerRoutes, requireToken } from "./routes.ts";
import { RunStreams } from "./run-streams.ts";

export interface HubOptions {
  store: Store;
  /** Coordinator/admin token for /v1 routes and run streams. */
  token: string;
  /** Token nodes enroll with. (Default: the coordinator token) */
  enrollToken?: string;
  /** Heartbeat interval given to nodes that do not ask for one, in ms. (Default: 5000) */
  heartbeatIntervalMs?: number;
  /** Instructions in flight per node. (Default: 32) */
  maxInflight?: number;
  /** How often the replica ends overdue instructions and marks silent nodes offline, in ms. (Default: 250) */
  sweepIntervalMs?: number;
  /** Safety net: how often every connected node is re-checked for claimable work, in ms. (Default: 1000) */
  pollIntervalMs?: number;
  /** Largest HTTP body and stream frame, in bytes. (Default: 8 MiB) */
  maxBodyBytes?: number;
  /** WebSocket ping interval to detect dead peers, in ms. (Default: 10000) */
  pingIntervalMs?: number;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Object storage for fleet checkpoints (file://DIR or s3://BUCKET/PREFIX); enables the checkpoint routes. */
  checkpointStore?: string | ObjectStore;
  /** Complete checkpoints kept per run. (Default: 3) */
  checkpointKeep?: number;
  /** pino logger, or a level. (Default: "silent") */
  logger?: pino.Logger | string;
}

export interface Hub {
  readonly id: string;
  readonly app: FastifyInstance;
  readonly nodes: NodeStreams;
  readonly runs: RunStreams;
  readonly checkpoints: Checkpoints | undefined;
  listen(opts?: { host?: string; port?: number }): Promise<string>;
  close(): Promise<void>;
}

/** One hub replica: stateless over the shared store; any number may run against the same store. */
export const createHub = (o: HubOptions): Hub => {
  const id = newId();
  const log = typeof o.logger === "object" ? o.logger : pino({ level: o.logger ?? "silent" });
  const maxBody = o.maxBodyBytes ?? MAX_FRAME_BYTES;
  const app = Fastify({
    loggerInstance: log,
    bodyLimit: maxBody,
    // Refuse what does not fit the schema instead of quietly stripping or coercing it.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    ...(o.tls ? { https: { cert: o.tls.cert, key: o.tls.key } } : {}),
  }) as unknown as FastifyInstance;
  const nodes = new NodeStreams({
    onReply: () => runs.wake(),
    store: o.store,
    hubId: id,
    maxInflight: o.maxInflight ?? 32,
    deliveryTimeoutMs: 10_000,
    log,
  });
  const runs = new RunStreams(o.store, log);
  /** A change made here: wake the nodes it concerns (all, when unknown) and the reply streams. */
  const changed = (dsts?: readonly string[]) => {
    if (dsts) for (const d of new Set(dsts)) nodes.wake(d);
    else nodes.wake();
    runs.wake();
  };

  app.setNotFoundHandler((req, reply) => {
    const hint =
      req.url.includes("/checkpoints") || req.url.includes("/hosts")
        ? " (checkpoint routes need --checkpoint-store)"
        : "";
    const e = new FleetlinkError(
      "ROUTE_NOT_FOUND",
      `no route ${req.method} ${req.url.split("?")[0]}${hint}`,
      { field: "path" },
    );
    return reply.code(404).send({ error: e.toJSON() });
  });
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (isFleetlinkError(err)) return reply.code(err.status).send({ error: err.toJSON() });
    if (err.validation) {
      const v = err.validation[0];
      const field =
        `${err.validationContext ?? ""}${v?.instancePath ?? ""}`.replace(/\//g, ".") +
        ((v?.params as { missingProperty?: string; additionalProperty?: string })?.missingProperty
          ? `.${(v!.params as { missingProperty: string }).missingProperty}`
          : (v?.params as { additionalProperty?: string })?.additionalProperty
            ? `.${(v!.params as { additionalProperty: string }).additionalProperty}`
            : "");
      const e = new FleetlinkError("INVALID_ARGUMENT", `${field}: ${v?.message ?? err.message}`, { field });
      return reply.code(400).send({ error: e.toJSON() });
    }
    if (err.statusCode === 413) {
      const e = new FleetlinkError("PAYLOAD_TOO_LARGE", `body exceeds ${maxBody} bytes`, { field: "body" });
      return reply.code(413).send({ error: e.toJSON() });
    }
    if (err.statusCode && err.statusCode < 500) {
      const e = new FleetlinkError("INVALID_ARGUMENT", err.message, { field: "body" });
      return reply.code(err.statusCode).send({ error: e.toJSON() });
    }
    log.error({ err }, "request failed");
    return reply.code(500).send({ error: { code: "FLEETLINK_E_STORE_UNAVAILABLE", message: err.message } });
  });

  registerRoutes(app, {
    store: o.store,
    token: o.token,
    enrollToken: o.enrollToken ?? o.token,
    heartbeatIntervalMs: o.heartbeatIntervalMs ?? 5000,
    changed,
    stats: () => ({ connectedNodes: nodes.connected, runSubscribers: runs.subscribers }),
  });

  const objects =
    typeof o.checkpointStore === "string" ? openObjectStore(o.checkpointStore) : o.checkpointStore;
  const checkpoints = objects
    ? new Checkpoints({ store: o.store, objects, keep: o.checkpointKeep, changed, log })
    : undefined;
  if (checkpoints) {
    registerCheckpointRoutes(app, checkpoints, { preHandler: requireToken(o.token) });
    checkpoints.startMonitor();
  }

  const wss = new WebSocketServer({ noServer: true, maxPayload: maxBody });
  const reject = (socket: Duplex, e: FleetlinkError) => {
    socket.end(
      `HTTP/1.1 ${e.status} ${e.status === 401 ? "Unauthorized" : "Bad Request"}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${JSON.stringify({ error: e.toJSON() })}`,
    );
  };
  const upgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://hub");
    try {
      if (url.pathname === "/v1/nodes/stream") {
        const { nodeId, credential } = parseNodeToken(bearer(req.headers.authorization));
        if (!isId(nodeId)) throw new FleetlinkError("UNAUTHORIZED", "unknown node or bad credential");
        const node = await o.store.getNode(nodeId).catch(() => null);
        if (!node?.credentialHash || !sameSecret(hashCredential(credential), node.credentialHash))
          throw new FleetlinkError("UNAUTHORIZED", "unknown node or bad credential");
        if (node.status === "unregistered")
          throw new FleetlinkError("NODE_UNREGISTERED", "node is unregistered");
        wss.handleUpgrade(req, socket, head, (ws) => nodes.accept(node, wsTransport(keepAlive(ws))));
        return;
      }
      const m = /^\/v1\/runs\/([^/]+)\/stream$/.exec(url.pathname);
      if (m) {
        if (!sameSecret(bearer(req.headers.authorization), o.token))
          throw new FleetlinkError("UNAUTHORIZED", "wrong token");
        const runId = decodeURIComponent(m[1]!);
        await o.store.getRun(runId);
        wss.handleUpgrade(req, socket, head, (ws) => runs.accept(runId, wsTransport(keepAlive(ws))));
        return;
      }
      reject(
        socket,
        new FleetlinkError("INVALID_ARGUMENT", `no stream at ${url.pathname}`, { field: "path" }),
      );
    } catch (e) {
      reject(socket, isFleetlinkError(e) ? e : new FleetlinkError("STORE_UNAVAILABLE", String(e)));
    }
  };
  app.server.on("upgrade", (req, socket, head) => void upgrade(req, socket, head));

  // Ping each socket; one that misses a pong is terminated, which closes its channel and releases its leases.
  const alive = new WeakMap<object, boolean>();
  const keepAlive = <W extends import("ws").WebSocket>(ws: W): W => {
    alive.set(ws, true);
    ws.on("pong", () => alive.set(ws, true));
    return ws;
  };
  const timers = [
    setInterval(() => {
      for (const ws of wss.clients) {
        if (!alive.get(ws)) ws.terminate();
        else {
          alive.set(ws, false);
          ws.ping();
        }
      }
    }, o.pingIntervalMs ?? 10_000),
    setInterval(() => {
      o.store
        .sweep()
        .then((n) => n && runs.wake())
        .catch((e) => log.warn({ err: String(e) }, "sweep failed"));
    }, o.sweepIntervalMs ?? 250),
    setInterval(() => nodes.wake(), o.pollIntervalMs ?? 1000),
  ];
  for (const t of timers) t.unref();
  // Another replica committed something: it may concern any node or run here. Our own commits wake
  // exactly what they concern at the place they are made.
  const unwatch = o.store.watch((source) => {
    if (source === "remote") changed();
  });

  return {
    id,
    app,
    nodes,
    runs,
    checkpoints,
    async listen(l = {}) {
      const address = await app.listen({ host: l.host ?? "127.0.0.1", port: l.port ?? 0 });
      return address.replace("[::1]", "127.0.0.1");
    },
    async close() {
      unwatch();
      checkpoints?.stop();
      for (const t of timers) clearInterval(t);
      nodes.closeAll();
      runs.closeAll();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      await app.close();
    },
  };
};
