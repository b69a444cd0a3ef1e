// bench:fanout: how many node streams one hub process holds, what each costs it in memory, and how long a
// broadcast to all of them takes until every reply is back at the coordinator. For each of COUNTS nodes: the hub
// (`fleetlink serve`, its own process) on each backend; NodeAgents split over up to 4 worker processes, each
// enrolling over HTTP and then holding its own WebSocket stream; the coordinator (a Fleet) in this process. Hub
// memory is its VmRSS (/proc/<pid>/status) before the nodes connect and once they are all online.
// Baseline in the same run: a raw `ws` server process holding the same number of idle connections (from the
// same number of client processes), its VmRSS before/after, and one frame sent to every connection until each
// has echoed it. Prints its parameters, a table, then one JSON object per configuration.
//
// Environment: FLEETLINK_BENCH_POSTGRES_URL (or FLEETLINK_TEST_POSTGRES_URL; default
// postgres://root@127.0.0.1:5432/test), BENCH_FANOUT_COUNTS (default 1000,10000), BENCH_FANOUT_BACKENDS
// (default sqlite,postgres), BENCH_HUB_NODE_ARGS (Node flags for the hub process, e.g.
// "--cpu-prof --cpu-prof-dir=/tmp/prof"; the hub is then stopped gracefully, so that the profile is written).
import { cpus } from "node:os";
import { Fleet } from "../src/coordinator/fleet.ts";
import {
  ask,
  type Backend,
  benchStore,
  cpuMs,
  exited,
  fdLimits,
  forkWorker,
  hardLimit,
  PG_URL,
  pgReachable,
  printTable,
  redact,
  round,
  rssKb,
  sleep,
  startHub,
  startNodes,
  TOKEN,
} from "./fleet-worker.ts";

const COUNTS = (process.env.BENCH_FANOUT_COUNTS ?? "1000,10000").split(",").map(Number);
const BACKENDS = (process.env.BENCH_FANOUT_BACKENDS ?? "sqlite,postgres").split(",") as Backend[];
const NODES_PER_WORKER = 2500;
const MAX_WORKERS = 4;
// A replica records its streams' heartbeats in one statement per batch (not one write per heartbeat), which
// the idle columns measure. 30 s by default: at the agents' 5 s default, 10,000 agents ping the hub 8,000 times
// a second from 4 worker processes, which saturates this 2-core machine's client side by itself (run with
// BENCH_FANOUT_HEARTBEAT_MS=5000 and fewer nodes to see the default's idle cost).
const HEARTBEAT_MS = Number(process.env.BENCH_FANOUT_HEARTBEAT_MS ?? 30_000);
/** Store methods that only read; every other one counted in /metrics is a write transaction. */
const READS = new Set([
  "getNode",
  "listNodes",
  "getSessions",
  "claimableNodes",
  "getRun",
  "listRuns",
  "getInstructions",
  "listInstructions",
  "getReplies",
  "getRecord",
  "listRecords",
  "stats",
  "now",
]);
const CONNECT_CONCURRENCY = 100; // per worker
const SETTLE_MS = 2000;
const IDLE_CPU_MS = 10_000; // two heartbeat intervals at the default
const PAYLOAD = { op: "ping", data: "x".repeat(64) };
const HARD_LIMIT_MS = 300_000;
const WS_WORKER = new URL("./ws-worker.ts", import.meta.url).pathname;
const HUB_NODE_ARGS = (process.env.BENCH_HUB_NODE_ARGS ?? "").split(" ").filter(Boolean);

interface Row {
  system: string;
  backend: string;
  nodes: number;
  workers: number;
  connectS: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  kbPerNode: number;
  idleCpuPct: number;
  /** Store write / read calls per second of the idle hub (from its /metrics); null for raw ws. */
  idleWritesPerS: number | null;
  idleReadsPerS: number | null;
  broadcastMs: number;
  replies: number;
  rssPeakMb: number;
}

const workersFor = (n: number) => Math.min(MAX_WORKERS, Math.max(1, Math.ceil(n / NODES_PER_WORKER)));
const mb = (kb: number) => round(kb / 1024, 1);

/** Hub CPU use while nothing is asked of it, in % of one core (one decimal). */
const idleCpu = async (pid: number) => {
  const c0 = cpuMs(pid);
  const t0 = performance.now();
  await sleep(IDLE_CPU_MS);
  return round((100 * (cpuMs(pid) - c0)) / (performance.now() - t0), 1);
};

/** Store calls the hub has made so far, writes and reads, from its Prometheus histogram counts. */
const storeCalls = async (url: string) => {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const text = await res.text();
  let writes = 0;
  let reads = 0;
  for (const m of text.matchAll(/^fleetlink_store_operation_seconds_count\{([^}]*)\} (\d+)/gm)) {
    const op = /operation="([^"]+)"/.exec(m[1]!)?.[1] ?? "";
    if (READS.has(op)) reads += Number(m[2]);
    else writes += Number(m[2]);
  }
  return { writes, reads };
};

const rawWs = async (n: number): Promise<Row> => {
  const workers = workersFor(n);
  const server = forkWorker(WS_WORKER, ["idle-server"], n + 256);
  const clients: ReturnType<typeof forkWorker>[] = [];
  try {
    const port = await ask<number>(server, "port");
    await sleep(500);
    const before = rssKb(server.pid!);
    const t0 = performance.now();
    for (let w = 0; w < workers; w++) {
      const count = Math.floor(((w + 1) * n) / workers) - Math.floor((w * n) / workers);
      clients.push(
        forkWorker(WS_WORKER, ["idle-clients", `ws://127.0.0.1:${port}/`, String(count)], count + 256),
      );
    }
    await Promise.all(clients.map((c) => ask(c, "ready", undefined, 120_000)));
    const connectS = (performance.now() - t0) / 1000;
    await sleep(SETTLE_MS);
    const after = rssKb(server.pid!);
    const idleCpuPct = await idleCpu(server.pid!);
    const broadcastMs = await ask<number>(server, "broadcastMs", { broadcast: true });
    const idleWritesPerS = null;
    const idleReadsPerS = null;
    const clientsNow = await ask<number>(server, "clients", { clients: true });
    return {
      system: "raw ws",
      backend: "-",
      nodes: n,
      workers,
      connectS: round(connectS, 1),
      rssBeforeMb: mb(before),
      rssAfterMb: mb(after),
      kbPerNode: round((after - before) / n, 1),
      idleCpuPct,
      idleWritesPerS,
      idleReadsPerS,
      broadcastMs: round(broadcastMs, 0),
      replies: clientsNow,
      rssPeakMb: mb(rssKb(server.pid!)),
    };
  } finally {
    for (const c of [server, ...clients]) c.kill("SIGKILL");
    await Promise.all([server, ...clients].map(exited));
  }
};

const fleetlink = async (backend: Backend, n: number): Promise<Row> => {
  const workers = workersFor(n);
  const store = benchStore(backend, "fanout");
  const hub = await startHub(store.url, { fds: n + 512, nodeArgs: HUB_NODE_ARGS });
  let nodes: Awaited<ReturnType<typeof startNodes>> | undefined;
  let fleet: Fleet | undefined;
  try {
    await sleep(500);
    const before = rssKb(hub.pid);
    const t0 = performance.now();
    nodes = await startNodes(hub.url, n, {
      workers,
      heartbeatIntervalMs: HEARTBEAT_MS,
      concurrency: CONNECT_CONCURRENCY,
      prefix: `fan${n}`,
    });
    const connectS = (performance.now() - t0) / 1000;
    console.error(`  ${backend} ${n}: all online in ${connectS.toFixed(1)} s`);
    await sleep(SETTLE_MS);
    const after = rssKb(hub.pid);
    const c0 = await storeCalls(hub.url);
    const i0 = performance.now();
    const idleCpuPct = await idleCpu(hub.pid);
    const c1 = await storeCalls(hub.url);
    const idleS = (performance.now() - i0) / 1000;
    // The scrape itself is not a store call (store-wide counts are cached for 1 s and read at most once here).
    const idleWritesPerS = round((c1.writes - c0.writes) / idleS, 1);
    const idleReadsPerS = round((c1.reads - c0.reads) / idleS, 1);
    fleet = await Fleet.connect({ hub: hub.url, token: TOKEN });
    const run = await fleet.createRun();
    let peak = after;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssKb(hub.pid));
    }, 50);
    const b0 = performance.now();
    const b = await run.configuration(nodes.ids).broadcast("echo", PAYLOAD, { ttlMs: 120_000 });
    const out = await b.done;
    const broadcastMs = performance.now() - b0;
    clearInterval(sampler);
    let ok = 0;
    for (const it of out.values()) if (it.ok) ok++;
    console.error(`  ${backend} ${n}: broadcast ${broadcastMs.toFixed(0)} ms, ${ok} replies`);
    return {
      system: "fleetlink",
      backend,
      nodes: n,
      workers,
      connectS: round(connectS, 1),
      rssBeforeMb: mb(before),
      rssAfterMb: mb(after),
      kbPerNode: round((after - before) / n, 1),
      idleCpuPct,
      idleWritesPerS,
      idleReadsPerS,
      broadcastMs: round(broadcastMs, 0),
      replies: ok,
      rssPeakMb: mb(Math.max(peak, rssKb(hub.pid))),
    };
  } finally {
    await fleet?.close();
    // Killed rather than stopped: a graceful stop gives back every node's leases one statement per node, which
    // on SQLite takes seconds at 10,000 nodes (see BENCHMARKS.md), and this store is thrown away; stopped only when
    // profiling, since a killed hub writes no profile.
    await hub.stop({ kill: HUB_NODE_ARGS.length === 0 });
    await nodes?.stop();
    await store.cleanup();
  }
};

const main = async () => {
  hardLimit(HARD_LIMIT_MS);
  const fds = fdLimits();
  const need = Math.max(...COUNTS) + 512;
  console.log("bench:fanout");
  console.log(`  nodes: ${COUNTS.join(", ")}; backends: ${BACKENDS.join(", ")}`);
  console.log(
    `  processes: hub = \`fleetlink serve\`; nodes = NodeAgents (echo handler, heartbeat ${HEARTBEAT_MS} ms, enrolled over HTTP) in ceil(n/${NODES_PER_WORKER}) ≤ ${MAX_WORKERS} worker processes, ${CONNECT_CONCURRENCY} enrolling at once per worker; coordinator = this process`,
  );
  console.log(
    `  memory: hub VmRSS before the nodes connect and ${SETTLE_MS} ms after the last is online (no forced GC); peak = highest VmRSS sampled during the broadcast`,
  );
  console.log(
    `  idle: hub CPU over ${IDLE_CPU_MS} ms with every node connected and nothing asked of it, and the store calls it made meanwhile (its /metrics; writes = every store method but reads)`,
  );
  console.log(
    `  broadcast: one run.configuration(all).broadcast("echo"), until every reply is back at the coordinator`,
  );
  console.log(
    `  baseline: raw ws server process with the same number of idle connections from the same number of client processes`,
  );
  console.log(
    `  open files: ulimit -n soft ${fds.soft}, hard ${fds.hard}; children that need more than the soft limit raise it (needed here: ${need})`,
  );
  console.log(
    `  postgres: ${redact(PG_URL)} (fresh schema, dropped after); sqlite: temp file, WAL, synchronous=NORMAL`,
  );
  console.log(`  machine: ${cpus().length} cores, node ${process.version}`);

  const counts = COUNTS.filter((n) => {
    if (n + 512 <= fds.hard) return true;
    console.log(
      `  skipping ${n} nodes: needs ~${n + 512} open files in one process, hard limit is ${fds.hard}`,
    );
    return false;
  });
  const backends =
    BACKENDS.includes("postgres") && !(await pgReachable())
      ? BACKENDS.filter((b) => b !== "postgres")
      : BACKENDS;
  const rows: Row[] = [];
  for (const n of counts) {
    rows.push(await rawWs(n));
    console.error(
      `  raw ws ${n}: ${rows.at(-1)!.kbPerNode} KB/connection, broadcast ${rows.at(-1)!.broadcastMs} ms`,
    );
    for (const backend of backends) rows.push(await fleetlink(backend, n));
  }

  console.log("");
  printTable(
    rows.map((r) => {
      const raw = rows.find((x) => x.system === "raw ws" && x.nodes === r.nodes);
      return {
        system: r.system,
        backend: r.backend,
        nodes: r.nodes,
        workers: r.workers,
        "connect s": r.connectS,
        "RSS before MB": r.rssBeforeMb,
        "RSS after MB": r.rssAfterMb,
        "KB/node": r.kbPerNode,
        "× raw KB": raw ? `${round(r.kbPerNode / raw.kbPerNode, 1)}×` : "-",
        "idle CPU": `${r.idleCpuPct}%`,
        "idle store writes/s": r.idleWritesPerS ?? "-",
        "idle store reads/s": r.idleReadsPerS ?? "-",
        "broadcast ms": r.broadcastMs,
        replies: r.replies,
        "peak RSS MB": r.rssPeakMb,
      };
    }),
  );
  console.log("");
  for (const r of rows) console.log(JSON.stringify({ bench: "fanout", ...r }));
  process.exit(0);
};

await main();
