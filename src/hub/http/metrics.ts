import type { FastifyInstance } from "fastify";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { ERROR_KINDS } from "../../checkpoint/object-store.ts";
import type { CheckpointObserver } from "../../checkpoint/orchestrator.ts";
import { errorCode, FleetlinkError } from "../../protocol/errors.ts";
import { createStoreMetrics, type StoreMetrics } from "../../store/instrumented.ts";
import type { Store, StoreStats } from "../../store/store.ts";
import { principalOf } from "./principal.ts";

/** HTTP requests take ms; a long poll or a large body can take seconds. */
const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** A checkpoint moves a few KB in ms up to GBs in minutes. */
const CHECKPOINT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
/** A pull's host status comes from the node: only known error kinds are label values, anything else "other". */
const KINDS: ReadonlySet<string> = new Set(["ok", "error", ...ERROR_KINDS]);
const kindLabel = (outcome: string): string => (KINDS.has(outcome) ? outcome : "other");
/** Store-wide counts are read at most this often, so a scrape storm cannot hammer the store. */
const STATS_CACHE_MS = 1000;

export interface HttpMetrics {
  requests: Counter<"method" | "route" | "status">;
  duration: Histogram<"method" | "route">;
}

export interface HubMetrics {
  readonly registry: Registry;
  /** This replica's id, the `replica` label of the per-replica gauges. */
  readonly replica: string;
  readonly store: StoreMetrics;
  readonly http: HttpMetrics;
  readonly checkpoints: CheckpointObserver;
  /** Instructions a `cancel` event told their node about, by code. */
  readonly cancellations: Counter<"code">;
}

/** Every series of one hub replica, in its own registry (never prom-client's global one). */
export const createHubMetrics = (o: { replica: string; backend: Store["backend"] }): HubMetrics => {
  const registry = new Registry();
  const registers = [registry];
  // Unprefixed, under their standard names (process_cpu_seconds_total, nodejs_eventloop_lag_seconds…), so stock
  // Node.js dashboards and alerts work as they are.
  collectDefaultMetrics({ register: registry });
  const http: HttpMetrics = {
    requests: new Counter({
      name: "fleetlink_http_requests_total",
      help: "HTTP requests answered, by method, route pattern and status code.",
      labelNames: ["method", "route", "status"] as const,
      registers,
    }),
    duration: new Histogram({
      name: "fleetlink_http_request_duration_seconds",
      help: "Time from request received to response sent, by method and route pattern.",
      labelNames: ["method", "route"] as const,
      buckets: HTTP_BUCKETS,
      registers,
    }),
  };
  const ckptBytes = new Counter({
    name: "fleetlink_checkpoint_bytes_total",
    help: "Bytes of checkpoint parts hosts pushed or pulled successfully, by kind (push/pull).",
    labelNames: ["kind"] as const,
    registers,
  });
  const ckptSeconds = new Histogram({
    name: "fleetlink_checkpoint_duration_seconds",
    help: "Time of whole checkpoint operations driven by this replica, start to last host, by kind.",
    labelNames: ["kind"] as const,
    buckets: CHECKPOINT_BUCKETS,
    registers,
  });
  const ckptOps = new Counter({
    name: "fleetlink_checkpoint_operations_total",
    help: 'Checkpoint operations finished, by kind and outcome ("ok" or the error kind).',
    labelNames: ["kind", "outcome"] as const,
    registers,
  });
  const ckptHosts = new Counter({
    name: "fleetlink_checkpoint_hosts_total",
    help: 'Hosts that finished their part of a checkpoint operation, by kind and outcome ("ok" or the error kind).',
    labelNames: ["kind", "outcome"] as const,
    registers,
  });
  const cancellations = new Counter({
    name: "fleetlink_cancellations_total",
    help: "Delivered instructions this replica told their node to stop (they ended before a reply), by error code.",
    labelNames: ["code"] as const,
    registers,
  });
  return {
    registry,
    replica: o.replica,
    cancellations,
    store: createStoreMetrics(registers),
    http,
    checkpoints: {
      host: (e) => {
        ckptHosts.inc({ kind: e.kind, outcome: kindLabel(e.outcome) });
        if (e.outcome === "ok" && e.bytes > 0) ckptBytes.inc({ kind: e.kind }, e.bytes);
      },
      operation: (e) => {
        ckptOps.inc({ kind: e.kind, outcome: kindLabel(e.outcome) });
        ckptSeconds.observe({ kind: e.kind }, e.seconds);
      },
    },
  };
};

export interface GaugeSources {
  nodes: { readonly connected: number; readonly inflight: number };
  runs: { readonly subscribers: number };
  /** The HTTP node API's sessions (delivery/http-sessions.ts). */
  http: { readonly size: number; readonly parked: number };
  store: Pick<Store, "stats">;
}

/** Gauges read when scraped, labelled with this replica's id (a fleet sums over replicas). */
const registerGauges = (registry: Registry, replica: string, g: GaugeSources): void => {
  const registers = [registry];
  const perReplica = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      labelNames: ["replica"] as const,
      registers,
      collect() {
        this.set({ replica }, read());
      },
    });
  perReplica(
    "fleetlink_connected_nodes",
    "Nodes connected to this replica that said hello (streams and HTTP node sessions).",
    () => g.nodes.connected,
  );
  perReplica(
    "fleetlink_node_http_sessions",
    "HTTP node API sessions open on this replica (said hello or not yet).",
    () => g.http.size,
  );
  perReplica(
    "fleetlink_parked_polls",
    "HTTP node API polls parked on this replica (new ones get 429 at the hub's maxParkedPolls).",
    () => g.http.parked,
  );
  perReplica("fleetlink_run_streams", "Run (reply) streams open on this replica.", () => g.runs.subscribers);
  perReplica(
    "fleetlink_inflight_instructions",
    "Instructions sent on this replica's node streams and not yet answered.",
    () => g.nodes.inflight,
  );

  let cached: { at: number; stats: Promise<StoreStats | null> } | undefined;
  const stats = (): Promise<StoreStats | null> => {
    if (!cached || Date.now() - cached.at >= STATS_CACHE_MS)
      // A store that cannot answer leaves the store-wide gauges out of this scrape, not the whole scrape.
      cached = { at: Date.now(), stats: g.store.stats().catch(() => null) };
    return cached.stats;
  };
  const storeWide = (name: string, help: string, label: string, pick: (s: StoreStats) => object) =>
    new Gauge({
      name,
      help,
      labelNames: [label],
      registers,
      async collect() {
        const s = await stats();
        this.reset();
        if (s) for (const [k, v] of Object.entries(pick(s))) this.set({ [label]: k }, Number(v));
      },
    });
  storeWide("fleetlink_store_runs", "Runs in the store, by status (store-wide).", "status", (s) => s.runs);
  storeWide("fleetlink_store_nodes", "Nodes in the store, by status (store-wide).", "status", (s) => s.nodes);
  storeWide(
    "fleetlink_store_instructions",
    "Instructions kept in the store, by state (store-wide).",
    "state",
    (s) => s.instructions,
  );
  storeWide(
    "fleetlink_store_replies",
    "Replies kept in the store, by state (store-wide).",
    "state",
    (s) => s.replies,
  );
};

/**
 * `GET /metrics` in the Prometheus text format, for access "metrics": admins and the metrics role (the static
 * `metricsToken` or a stored principal token with role metrics); other credentials get 401/403 from the access hook.
 */
export const registerMetricsRoute = (
  app: FastifyInstance,
  o: { metrics: HubMetrics; gauges: GaugeSources },
): void => {
  registerGauges(o.metrics.registry, o.metrics.replica, o.gauges);
  app.get(
    "/metrics",
    {
      config: { access: "metrics" },
      schema: {
        summary: "Prometheus metrics of this replica",
        description:
          "Every fleetlink_ series in the Prometheus text exposition format (see docs/metrics.md). Send the " +
          "admin token, the hub's metricsToken, or an unscoped principal token with role admin or metrics as a bearer token (series are hub-wide).",
        tags: ["operate"],
        security: [{ bearer: [] }],
        "x-error-codes": [errorCode("UNAUTHORIZED"), errorCode("FORBIDDEN"), errorCode("INTERNAL")],
        produces: ["text/plain"],
        response: {
          200: {
            description: "Prometheus text format 0.0.4",
            content: { "text/plain": { schema: { type: "string" } } },
          },
        },
      },
    },
    async (req, reply) => {
      // Series are hub-wide (every tenant's nodes and runs): a tenant-scoped token may not read them.
      if (principalOf(req).tenant !== null)
        throw new FleetlinkError(
          "FORBIDDEN",
          "needs an unscoped token with role admin or metrics; this token is limited to one tenant",
        );
      const body = await o.metrics.registry.metrics();
      return reply.header("content-type", o.metrics.registry.contentType).send(body);
    },
  );
};
