import { hostname } from "node:os";
import rateLimit from "@fastify/rate-limit";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, LogController } from "fastify";
import pino from "pino";
import type { ObjectStore } from "../checkpoint/object-store.ts";
import { openObjectStore } from "../checkpoint/open.ts";
import { Checkpoints } from "../checkpoint/orchestrator.ts";
import {
  DEFAULT_BLOB_GRACE_MS,
  DEFAULT_MAX_BLOB_BYTES,
  DEFAULT_RUN_BLOB_QUOTA_BYTES,
  DEFAULT_UPLOAD_IDLE_MS,
} from "../protocol/blobs.ts";
import { FleetlinkError, invalid, isFleetlinkError } from "../protocol/errors.ts";
import { newId } from "../protocol/ids.ts";
import {
  FRAME_OVERHEAD_BYTES,
  MAX_LOGGED_CHARS,
  RESERVED_METHOD_PREFIX,
  truncate,
} from "../protocol/limits.ts";
import type { Instruction } from "../protocol/types.ts";
import { HUB_FEATURES } from "../protocol/version.ts";
import { instrumentStore } from "../store/instrumented.ts";
import type { NewInstruction, PushCall, Store, WithdrawOptions } from "../store/store.ts";
import { limitedLogger } from "../stream/limited-log.ts";
import { Coalesced } from "../util/coalesce.ts";
import { Audit } from "./audit.ts";
import { BlobCollector } from "./blobs/collector.ts";
import { createBlobMetrics } from "./blobs/metrics.ts";
import { openBlobStorage } from "./blobs/open.ts";
import { registerBlobRoutes } from "./blobs/routes.ts";
import type { BlobStorage } from "./blobs/storage.ts";
import { BlobUploads } from "./blobs/uploads.ts";
import { registerCheckpointRoutes } from "./checkpoints/routes.ts";
import { registerDashboard } from "./dashboard/dashboard.ts";
import { GroupCommit } from "./delivery/group-commit.ts";
import { HttpSessions } from "./delivery/http-sessions.ts";
import { NodeStreams } from "./delivery/node-streams.ts";
import { RunStreams } from "./delivery/run-streams.ts";
import { acceptStreams, errorBody, hubLiveness } from "./delivery/upgrade.ts";
import { registerAccess } from "./http/access.ts";
import { registerAuditRoutes } from "./http/audit-routes.ts";
import {
  type CertIdentity,
  checkCertIdentity,
  clientCertServerOptions,
  registerClientCertChecks,
} from "./http/client-certs.ts";
import { createHubMetrics, registerMetricsRoute } from "./http/metrics.ts";
import { registerNodeRoutes } from "./http/node-routes.ts";
import { registerOpenApi } from "./http/openapi.ts";
import { registerLingeringClose } from "./http/request-drain.ts";
import { registerRequestLog } from "./http/request-log.ts";
import { registerRoutes } from "./http/routes.ts";
import { RunTenants } from "./http/tenancy.ts";
import { registerTokensRoutes } from "./http/tokens-routes.ts";
import { validationText } from "./http/validation-text.ts";

export interface HubOptions {
  store: Store;
  /**
   * The static admin token: an unscoped admin (bootstrap; principal "admin-token"). Principal tokens with
   * narrower roles and tenants are made with it (`POST /v1/tokens`). Never given to nodes.
   */
  token: string;
  /**
   * A static token nodes enroll with; it may only enroll. Must differ from `token`. Without it, nodes enroll
   * only with stored tokens (`POST /v1/enroll-tokens`). (Default: none)
   */
  enrollToken?: string;
  /** `"manual"`: new nodes stay pending (no stream, no work) until approved. (Default: "auto") */
  enrollApproval?: "auto" | "manual";
  /** Enrollments allowed per client address per window. (Default: 120 per 60000 ms) */
  enrollRateLimit?: { max: number; windowMs: number };
  /** Heartbeat interval given to nodes that do not ask for one, in ms. (Default: 5000) */
  heartbeatIntervalMs?: number;
  /** Instructions in flight per node. (Default: 32) */
  maxInflight?: number;
  /** How often the replica ends overdue instructions and marks silent nodes offline, in ms. (Default: 250) */
  sweepIntervalMs?: number;
  /** Safety net: how often every connected node is re-checked for claimable work, in ms. (Default: 1000) */
  pollIntervalMs?: number;
  /**
   * Largest HTTP body (a batch of instructions), in bytes. Each payload in it is limited by the store's
   * `maxPayloadBytes`, which also sets the stream frame limit. (Default: 16 MiB, at least one payload + envelope)
   */
  maxBodyBytes?: number;
  /** Bytes queued for a stream that does not read before it is disconnected (slow consumer). (Default: 64 MiB) */
  maxBufferedBytes?: number;
  /** Time a client has to send a whole HTTP request, headers included, in ms. (Default: 30000) */
  requestTimeoutMs?: number;
  /** Time a new node stream has to say hello before it is closed, in ms. (Default: 10000) */
  helloTimeoutMs?: number;
  /** Node protocol versions this hub accepts in hello; the conformance kit narrows them. (Default: SUPPORTED_PROTOCOLS) */
  protocols?: readonly number[];
  /** Dead-peer detection, in ms: a socket silent about this long is pinged, and dropped if still silent half of it later (within 1.5 × in all). (Default: 10000) */
  pingIntervalMs?: number;
  /**
   * HTTP node API polls parked at once on this replica, over all sessions, before new ones are refused with 429
   * (each session parks one at a time, each node has at most two sessions). (Default: 10000)
   */
  maxParkedPolls?: number;
  /**
   * Serve HTTPS and WSS. `clientCa` (PEM): mutual TLS for nodes: node streams, the HTTP node API and enrollment
   * require a client certificate it signed, within its validity (other callers present none); see docs/mtls.md.
   * `clientCertIdentity`: the certificate's subject CN must equal the node's `name` or `id`. (Default: "none")
   */
  tls?: {
    cert: string | Buffer;
    key: string | Buffer;
    clientCa?: string | Buffer | (string | Buffer)[];
    clientCertIdentity?: CertIdentity;
  };
  /** Object storage for fleet checkpoints (file://DIR or s3://BUCKET/PREFIX); enables the checkpoint routes. */
  checkpointStore?: string | ObjectStore;
  /** Complete checkpoints kept per run. (Default: 3) */
  checkpointKeep?: number;
  /**
   * pino logger, or a level. Requests are logged at info on completion, one line each (health probes and
   * /metrics at debug). (Default: "silent")
   */
  logger?: pino.Logger | string;
  /** Serve Prometheus metrics at `GET /metrics` and record them. (Default: true) */
  metrics?: boolean;
  /**
   * A static token with role metrics: it may only scrape `/metrics` (Prometheus' `authorization` /
   * `bearer_token`), so the scraper needs no admin rights. Admin tokens and unscoped principal tokens with role
   * metrics are accepted too. (Default: none)
   */
  metricsToken?: string;
  /** Serve the web dashboard at `/` and its live feed at `GET /v1/events` (docs/dashboard.md). (Default: true) */
  dashboard?: boolean;
  /** How often the dashboard's rate charts are sampled, in ms (an hour of samples is kept). (Default: 10000) */
  dashboardRateIntervalMs?: number;
  // Blobs (docs/blobs.md).
  /**
   * Where blob bytes live: `file://DIR`, `s3://BUCKET/PREFIX`, or a BlobStorage. Enables the blob routes and
   * announces "blobs" in hello; without it those routes answer 404 ROUTE_NOT_FOUND. (Default: none; `fleetlink
   * serve` defaults to `<db>.blobs/` next to a SQLite file, `./fleetlink-blobs` with PostgreSQL)
   */
  blobStore?: string | BlobStorage;
  /** Largest blob accepted, in bytes (413 PAYLOAD_TOO_LARGE beyond). (Default: 8 GiB) */
  maxBlobBytes?: number;
  /** Bytes of distinct blobs and open uploads one run may hold (413 QUOTA_EXCEEDED beyond). (Default: 64 GiB) */
  blobRunQuotaBytes?: number;
  /** How long a blob outlives its last live reference before it is deleted, in ms. (Default: 600000) */
  blobGraceMs?: number;
  /** An upload without progress this long is abandoned and its bytes removed, in ms. (Default: 3600000) */
  blobUploadIdleMs?: number;
  /** How often this replica collects blobs and abandoned uploads, in ms. (Default: 30000) */
  blobCollectIntervalMs?: number;
  /** Serve presigned download URLs to nodes (S3 only; announces "blob-urls" in hello). (Default: false) */
  blobPresign?: boolean;
  /**
   * Blob PUTs this replica streams at once (an S3 PUT buffers up to one 8 MiB part); one more is refused 429
   * RATE_LIMITED with Retry-After, which clients retry. (Default: 32)
   */
  blobMaxConcurrentPuts?: number;
}

/** Lifetime of a presigned blob URL: long enough for a GB over a slow link, short against leaks. (15 min) */
const PRESIGN_TTL_S = 15 * 60;

export interface Hub {
  readonly id: string;
  readonly app: FastifyInstance;
  readonly nodes: NodeStreams;
  readonly runs: RunStreams;
  readonly checkpoints: Checkpoints | undefined;
  /** The blob collector, when the hub serves blobs (tests run a round with `collect()`). */
  readonly blobs: BlobCollector | undefined;
  listen(opts?: { host?: string; port?: number }): Promise<string>;
  close(): Promise<void>;
}

/** The fleetlink error body, for the few places that answer outside Fastify's reply (raw sockets). */

/** One hub replica: stateless over the shared store; any number may run against the same store. */
/**
 * `checkpoint.*` instructions are the hub's own (assign, push, pull, activate; sent from its role records): a
 * coordinator's push of one is refused, so a node takes a host role only from the hub that records it. The
 * coordinator drives checkpoints through `/v1/runs/:run/checkpoints/…` (`fleet.checkpoints`, `fleetlink checkpoint`).
 */
const refuseReservedMethods = (items: readonly NewInstruction[]): void => {
  const i = items.findIndex((it) => it.method.startsWith(RESERVED_METHOD_PREFIX));
  if (i >= 0)
    throw new FleetlinkError(
      "INVALID_ARGUMENT",
      `items[${i}].method: ${JSON.stringify(items[i]!.method)}: methods starting with ${RESERVED_METHOD_PREFIX} are the hub's own; drive checkpoints with fleetlink checkpoint … or fleet.checkpoints`,
      { field: `items[${i}].method` },
    );
};

export const createHub = (o: HubOptions): Hub => {
  if (typeof o.token !== "string" || o.token.length === 0)
    throw new FleetlinkError("INVALID_ARGUMENT", "token: the admin token must be a non-empty string", {
      field: "token",
    });
  if (o.enrollToken !== undefined && (o.enrollToken.length === 0 || o.enrollToken === o.token))
    throw new FleetlinkError(
      "INVALID_ARGUMENT",
      "enrollToken: must be non-empty and differ from the admin token (nodes must never hold admin rights)",
      { field: "enrollToken" },
    );
  if (o.metricsToken !== undefined && (typeof o.metricsToken !== "string" || o.metricsToken.length === 0))
    throw new FleetlinkError("INVALID_ARGUMENT", "metricsToken: must be a non-empty string", {
      field: "metricsToken",
    });
  // Mutual TLS for nodes (http/client-certs.ts): checked here, before anything starts.
  const clientCertTls = o.tls?.clientCa ? clientCertServerOptions(o.tls.clientCa) : undefined;
  const clientCerts = o.tls?.clientCa
    ? { identity: checkCertIdentity(o.tls.clientCertIdentity ?? "none") }
    : undefined;
  if (!clientCerts && o.tls?.clientCertIdentity && o.tls.clientCertIdentity !== "none")
    throw invalid("tls.clientCertIdentity", "binds a node to its client certificate: needs tls.clientCa");
  const blobStorage = typeof o.blobStore === "string" ? openBlobStorage(o.blobStore) : o.blobStore;
  if (o.blobPresign && !blobStorage?.canPresign)
    throw invalid("blobPresign", "presigned downloads need s3:// blob storage (blobStore)");
  for (const [field, v] of Object.entries({
    maxBlobBytes: o.maxBlobBytes,
    blobRunQuotaBytes: o.blobRunQuotaBytes,
    blobGraceMs: o.blobGraceMs,
    blobUploadIdleMs: o.blobUploadIdleMs,
    blobCollectIntervalMs: o.blobCollectIntervalMs,
    blobMaxConcurrentPuts: o.blobMaxConcurrentPuts,
  })) {
    const min = field === "blobCollectIntervalMs" || field === "blobMaxConcurrentPuts" ? 1 : 0;
    if (v !== undefined && (!Number.isSafeInteger(v) || v < min))
      throw invalid(field, min === 1 ? "must be a positive integer" : "must be a non-negative integer");
  }
  const id = newId();
  // One registry per hub: several hubs in one process (tests) must not share series.
  const metrics =
    o.metrics === false ? undefined : createHubMetrics({ replica: id, backend: o.store.backend });
  // Every store call of this replica goes through here, so each is timed and its outcomes counted.
  const store: Store = metrics ? instrumentStore(o.store, metrics.store) : o.store;
  const baseLog = typeof o.logger === "object" ? o.logger : pino({ level: o.logger ?? "silent" });
  // Peer-triggered warnings (bad frames, resets, protocol violations) are rate limited.
  const log = limitedLogger(baseLog);
  const maxPayload = store.options.maxPayloadBytes;
  const maxFrame = maxPayload + FRAME_OVERHEAD_BYTES;
  const maxBody = Math.max(o.maxBodyBytes ?? 16 * 1024 * 1024, maxFrame);
  const requestTimeout = o.requestTimeoutMs ?? 30_000;
  // Node checks request and header deadlines on this interval (30 s by default, far above our deadlines).
  const serverTimeouts = {
    headersTimeout: Math.min(10_000, requestTimeout),
    connectionsCheckingInterval: Math.min(1000, Math.max(100, requestTimeout / 4)),
  };
  const app = Fastify({
    loggerInstance: baseLog,
    // One line per request on completion instead of Fastify's two (see request-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
    http: serverTimeouts,
    bodyLimit: maxBody,
    requestTimeout,
    // close() must not wait for idle keep-alive sockets or clients that never sent a request.
    forceCloseConnections: true,
    // Refuse what does not fit the schema instead of quietly stripping or coercing it.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    // Router and content-type errors Fastify raises before a route runs, in the fleetlink error shape.
    frameworkErrors: (err, _req, reply) => {
      const e = new FleetlinkError("INVALID_ARGUMENT", `request: ${err.message}`, { field: "path" });
      return (reply as unknown as FastifyReply).code(400).send({ error: e.toJSON() });
    },
    // Malformed HTTP (bad request line, oversized headers): answer in the same shape and close.
    clientErrorHandler: (err, socket) => {
      if (!socket.writable) return socket.destroy();
      const code = (err as { code?: string }).code;
      const timedOut = code === "ERR_HTTP_REQUEST_TIMEOUT";
      const status = code === "HPE_HEADER_OVERFLOW" ? 431 : timedOut ? 408 : 400;
      // A request still arriving after requestTimeoutMs (a slow blob PUT) is not malformed: HUB_UNAVAILABLE,
      // which clients retry (a blob upload asks its status and sends the rest in the next PUT).
      const body = errorBody(
        timedOut
          ? new FleetlinkError(
              "HUB_UNAVAILABLE",
              `the request did not arrive within ${requestTimeout} ms (requestTimeoutMs): send it again, or less per request`,
            )
          : new FleetlinkError("INVALID_ARGUMENT", `malformed HTTP request: ${code ?? "?"}`),
      );
      socket.end(
        `HTTP/1.1 ${status} ${timedOut ? "Request Timeout" : "Bad Request"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    },
    ...(o.tls
      ? {
          https: {
            cert: o.tls.cert,
            key: o.tls.key,
            ...clientCertTls,
            ...serverTimeouts,
          },
        }
      : {}),
  }) as unknown as FastifyInstance;
  // One interval for the dead-peer rule and for what hello announces to nodes.
  const pingIntervalMs = o.pingIntervalMs ?? 10_000;
  const nodes = new NodeStreams({
    // A reply stored claimed for a run stream here goes straight to it; any other wakes the reply pump.
    onReply: (reply) => (reply ? runs.send(reply) : runs.wake()),
    holdsRun: (runId) => runs.holds(runId),
    store,
    maxInflight: o.maxInflight ?? 32,
    deliveryTimeoutMs: 10_000,
    helloTimeoutMs: o.helloTimeoutMs,
    pingIntervalMs,
    protocols: o.protocols,
    features: HUB_FEATURES.filter(
      (f) => (f !== "blobs" || blobStorage) && (f !== "blob-urls" || (blobStorage && o.blobPresign)),
    ),
    log,
    onCancelled: metrics ? (code, n) => metrics.cancellations.inc({ code }, n) : undefined,
  });
  /**
   * Every push (HTTP or run stream): instructions for nodes whose stream is here go in already leased and are
   * sent as soon as the push commits; the others wake the dispatcher (here) or other replicas (store watch).
   */
  const pushes = new GroupCommit((calls: PushCall[]) => store.pushBatch(calls), 256);
  /** Where this replica listens, once listen() has bound it (for the presence record). */
  let listening: string | undefined;
  const push = async (runId: string, items: NewInstruction[]): Promise<Instruction[]> => {
    refuseReservedMethods(items);
    const lease = nodes.lease(items);
    let pushed: Instruction[] | null = null;
    try {
      // Group commit: pushes from every HTTP request and run stream that arrive while the last batch commits
      // share one transaction; each is still all or none and answered on its own.
      const r = await pushes.add({ runId, items: lease.items });
      if (!r.ok) throw r.error;
      pushed = r.instructions;
      return pushed;
    } finally {
      lease.settle(pushed);
    }
  };
  // One dead-peer rule for every WebSocket and HTTP node session of this replica.
  const keepalive = hubLiveness(pingIntervalMs);
  const sessions = new HttpSessions({ nodes, liveness: keepalive, maxParkedPolls: o.maxParkedPolls });
  /**
   * Every withdraw (HTTP or run stream): delivered instructions it ended are in the cancellation log now, so
   * their nodes, if held here, are told at once.
   */
  const withdraw = async (
    runId: string,
    ids: readonly string[],
    opts?: WithdrawOptions,
  ): Promise<string[]> => {
    const withdrawn = await store.withdrawInstructions(runId, ids, opts);
    if (withdrawn.length > 0) nodes.cancelled();
    // Replies left for the run's coordinator: its reply stream, if held here, reads them now.
    if (withdrawn.length > 0 && opts?.deliver) runs.wake();
    return withdrawn;
  };
  const runs = new RunStreams(store, log, maxFrame, { push, withdraw });
  /** A change made here: wake the nodes it concerns (all, when unknown) and the reply streams. */
  const changed = (dsts?: readonly string[]) => {
    if (dsts) for (const d of new Set(dsts)) nodes.wake(d);
    else nodes.wake();
    runs.wake();
  };

  registerRequestLog(app, { log: baseLog, metrics: metrics?.http });
  if (clientCerts) registerClientCertChecks(app, { ...clientCerts, store });
  // Who did what: one log line per action, and rows in the store's audit table (batched).
  const audit = new Audit({ store, log: baseLog });
  const tenants = new RunTenants(store);
  const access = { store, token: o.token, enrollToken: o.enrollToken, metricsToken: o.metricsToken, audit };
  // The one access decision, by each route's config.access (a route without one makes this throw); before
  // any route is declared, so that its onRoute check sees them all.
  registerAccess(app, access, tenants);
  // /openapi.json and /docs; first, so that it sees every route declared after it.
  registerOpenApi(app);
  registerLingeringClose(app);
  void app.register(rateLimit, {
    global: false,
    errorResponseBuilder: (_req, c) =>
      new FleetlinkError("RATE_LIMITED", `too many requests from this address: retry in ${c.after}`),
  });
  app.setNotFoundHandler((req, reply) => {
    const hint =
      req.url.includes("/checkpoints") || req.url.includes("/hosts")
        ? " (checkpoint routes need --checkpoint-store)"
        : req.url.includes("/blobs") && !blobStorage
          ? " (this hub serves no blobs: start it with --blobs)"
          : "";
    const e = new FleetlinkError(
      "ROUTE_NOT_FOUND",
      `no route ${req.method} ${truncate(req.url.split("?")[0]!, MAX_LOGGED_CHARS)}${hint}`,
      { field: "path" },
    );
    return reply.code(404).send({ error: e.toJSON() });
  });
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (isFleetlinkError(err)) return reply.code(err.status).send({ error: err.toJSON() });
    if (err.validation) {
      const { field, message } = validationText(err.validation, err.validationContext, err.message);
      const e = new FleetlinkError("INVALID_ARGUMENT", message, { field });
      return reply.code(400).send({ error: e.toJSON() });
    }
    if (err.statusCode === 413) {
      const e = new FleetlinkError("PAYLOAD_TOO_LARGE", "request body is larger than this route accepts", {
        field: "body",
      });
      return reply.code(413).send({ error: e.toJSON() });
    }
    if (err.statusCode === 429) {
      const e = new FleetlinkError("RATE_LIMITED", err.message, {});
      return reply.code(429).send({ error: e.toJSON() });
    }
    if (err.statusCode && err.statusCode < 500) {
      const e = new FleetlinkError("INVALID_ARGUMENT", truncate(err.message, MAX_LOGGED_CHARS), {
        field: "body",
      });
      return reply.code(err.statusCode).send({ error: e.toJSON() });
    }
    if (err instanceof RangeError) {
      // A body nested so deep that a parser or serializer ran out of stack: the input's fault, not the hub's.
      const e = new FleetlinkError("INVALID_ARGUMENT", `body: ${err.message}`, { field: "body" });
      return reply.code(400).send({ error: e.toJSON() });
    }
    log.warn({ err: String(err) }, "request failed");
    const e = new FleetlinkError("INTERNAL", truncate(String(err.message), MAX_LOGGED_CHARS));
    return reply.code(500).send({ error: e.toJSON() });
  });

  // Routes go in a plugin registered after the rate limiter, so its per-route limits see them.
  const routes = {
    ...access,
    heartbeatIntervalMs: o.heartbeatIntervalMs ?? 5000,
    manualApproval: o.enrollApproval === "manual",
    enrollRateLimit: o.enrollRateLimit ?? { max: 120, windowMs: 60_000 },
    changed,
    push,
    withdraw,
    stats: () => ({ connectedNodes: nodes.connected, runSubscribers: runs.subscribers }),
    unregistered: (nodeId: string) => nodes.closeNode(nodeId, "node unregistered"),
    tenants,
  };

  const objects =
    typeof o.checkpointStore === "string" ? openObjectStore(o.checkpointStore) : o.checkpointStore;
  const checkpoints = objects
    ? new Checkpoints({ store, objects, keep: o.checkpointKeep, changed, log, observe: metrics?.checkpoints })
    : undefined;
  const blobObserver = metrics && blobStorage ? createBlobMetrics(metrics.registry, store) : undefined;
  const blobUploads = blobStorage
    ? new BlobUploads({
        store,
        storage: blobStorage,
        maxBlobBytes: o.maxBlobBytes ?? DEFAULT_MAX_BLOB_BYTES,
        runQuotaBytes: o.blobRunQuotaBytes ?? DEFAULT_RUN_BLOB_QUOTA_BYTES,
        maxConcurrentPuts: o.blobMaxConcurrentPuts,
        observe: blobObserver,
      })
    : undefined;
  const blobCollector = blobStorage
    ? new BlobCollector({
        store,
        storage: blobStorage,
        graceMs: o.blobGraceMs ?? DEFAULT_BLOB_GRACE_MS,
        uploadIdleMs: o.blobUploadIdleMs ?? DEFAULT_UPLOAD_IDLE_MS,
        intervalMs: o.blobCollectIntervalMs ?? 30_000,
        forget: (ids) => blobUploads?.forget(ids),
        observe: blobObserver,
        warn: (msg, err) => log.warn({ err: String(err) }, msg),
      })
    : undefined;
  void app.register(async (scope) => {
    registerRoutes(scope, routes);
    registerTokensRoutes(scope, { store, audit });
    registerAuditRoutes(scope, { store });
    if (blobStorage && blobUploads)
      void scope.register(async (blobApi) =>
        registerBlobRoutes(blobApi, {
          store,
          storage: blobStorage,
          uploads: blobUploads,
          presign: o.blobPresign === true,
          presignTtlS: PRESIGN_TTL_S,
          observe: blobObserver,
        }),
      );
    void scope.register(async (nodeApi) =>
      registerNodeRoutes(nodeApi, { store, sessions, maxFrameBytes: maxFrame }),
    );
    if (metrics)
      registerMetricsRoute(scope, {
        metrics,
        gauges: { nodes, runs, http: sessions, store },
      });
    if (checkpoints) registerCheckpointRoutes(scope, checkpoints, {}, { tenants, audit });
    if (o.dashboard !== false)
      registerDashboard(scope, {
        store,
        access,
        replica: id,
        nodes,
        runs,
        checkpoints,
        log,
        inflightByNode: () => nodes.inflightByNode(),
        address: () => listening,
        rateIntervalMs: o.dashboardRateIntervalMs,
      });
  });
  checkpoints?.startMonitor();

  const streams = acceptStreams(app.server, {
    store,
    access,
    tenants,
    nodes,
    runs,
    log,
    maxFrameBytes: maxFrame,
    maxBufferedBytes: o.maxBufferedBytes,
    liveness: keepalive,
    clientCerts,
  });

  const sweeper = new Coalesced(
    async () => {
      if (!(await store.sweep())) return;
      runs.wake();
      // A sweep that ended delivered instructions logged them: tell their nodes held here.
      nodes.cancelled();
    },
    (e) => log.warn({ err: String(e) }, "sweep failed"),
  );
  const timers = [
    // A slow store: never two sweeps at once, and none queued behind a running one.
    setInterval(() => sweeper.triggerIfIdle(), o.sweepIntervalMs ?? 250),
    // Leases that ran out (a node that died without closing its stream) change nothing a watch would see.
    setInterval(() => nodes.wakeClaimable(), o.pollIntervalMs ?? 1000),
  ];
  for (const t of timers) t.unref();
  // Another replica committed something: it may concern any node or run here. Our own commits wake
  // exactly what they concern at the place they are made.
  const unwatch = store.watch((source, change) => {
    // Only a withdraw or a sweep appends to the cancellation log; both call nodes.cancelled() here when they
    // are made here, so a local change (every push and reply) costs no log read. Another replica's change may
    // be one of them (the periodic poll reads the log too).
    if (source !== "remote") return;
    if (change) {
      // It says what it concerns (another replica's pushes and replies): claim for those nodes if they are here,
      // read those runs' replies if their streams are here; no scan, no log read, no fencing check.
      for (const n of change.nodes ?? []) nodes.wake(n);
      if (change.runs?.some((r) => runs.holds(r))) runs.wake();
      return;
    }
    nodes.cancelled();
    nodes.remoteChanged();
    runs.wake();
  });

  return {
    id,
    app,
    nodes,
    runs,
    checkpoints,
    blobs: blobCollector,
    async listen(l = {}) {
      const address = (await app.listen({ host: l.host ?? "127.0.0.1", port: l.port ?? 0 })).replace(
        "[::1]",
        "127.0.0.1",
      );
      // A wildcard bind says nothing to someone reading the dashboard elsewhere: name the host instead.
      listening = address.replace(/\/\/(0\.0\.0\.0|\[::\])(?=:)/, `//${hostname()}`);
      return address;
    },
    async close() {
      unwatch();
      checkpoints?.stop();
      for (const t of timers) clearInterval(t);
      sweeper.close();
      nodes.closeAll();
      sessions.close();
      runs.closeAll();
      streams.close();
      keepalive.close();
      await blobCollector?.close();
      await app.close();
      await audit.close();
      // Only storage the hub opened from a URL is the hub's to close.
      if (typeof o.blobStore === "string") await blobStorage?.close();
    },
  };
};
