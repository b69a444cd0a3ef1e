// bench:throughput: sustained instruction → node → reply → coordinator round trips per second with NODES nodes,
// through one hub on SQLite and on PostgreSQL. The hub is its own OS process (`fleetlink serve`), the nodes are
// NodeAgents in one worker process, the coordinator (a Fleet, one run) is this process and keeps a window of
// work in flight, two ways:
//   single: WINDOW loops, each calling one node at a time (`configuration([node]).call`, quorum all), nodes
//           taken round robin: one instruction per HTTP push, WINDOW round trips in flight;
//   batch:  BATCHES loops, each broadcasting to all NODES nodes and waiting for every reply (`broadcast().done`):
//           NODES instructions per push, BATCHES × NODES round trips in flight.
// A round trip counts when its reply has reached the coordinator. Baseline in the same run, on the same
// PostgreSQL: pg-boss (the coordinator's side sends jobs one `send` each, WINDOW in flight; a consumer process
// fetches up to 32 jobs at once and completes them in one call, 4 fetch loops), completed jobs per second.
// Prints its parameters, a table, then one JSON object per configuration.
//
// Environment: FLEETLINK_BENCH_POSTGRES_URL (or FLEETLINK_TEST_POSTGRES_URL; default
// postgres://root@127.0.0.1:5432/test), BENCH_THROUGHPUT_DURATION_MS (per configuration, default 8000).
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { Fleet } from "../src/coordinator/fleet.ts";
import type { RunHandle } from "../src/coordinator/run.ts";
import {
  ask,
  type Backend,
  benchStore,
  cpuMs,
  dropSchema,
  exited,
  forkWorker,
  hardLimit,
  PG_URL,
  pgReachable,
  printTable,
  redact,
  round,
  startHub,
  startNodes,
  TOKEN,
} from "./fleet-worker.ts";
import { openBoss } from "./pgboss-worker.ts";

const DURATION_MS = Number(process.env.BENCH_THROUGHPUT_DURATION_MS ?? 8000);
const WARMUP_MS = 1500;
const NODES = 50;
const WINDOW = 256;
const BATCHES = 8;
const PGBOSS_BATCH = 32;
const PGBOSS_LOOPS = 4;
const PAYLOAD = { op: "work", data: "x".repeat(64) };
const HARD_LIMIT_MS = 240_000;

interface Row {
  system: string;
  backend: string;
  mode: string;
  inFlight: number;
  roundTrips: number;
  perSec: number;
  hubCpuPct?: number;
}

/**
 * Runs `loops` loops of `once` (each returning how many round trips it completed) for WARMUP_MS + DURATION_MS;
 * round trips completed inside the measured window, per second.
 */
const measure = async (
  loops: number,
  once: (i: number) => Promise<number>,
  during?: { start(): void; end(): void },
) => {
  const t0 = performance.now();
  const from = t0 + WARMUP_MS;
  const until = from + DURATION_MS;
  let counted = 0;
  let phase = 0;
  // The window's edges are marked by a timer, not by the loops, so `during` sees exactly the measured window.
  const tick = () => {
    const now = performance.now();
    if (phase === 0 && now >= from) {
      phase = 1;
      during?.start();
    }
    if (phase === 1 && now >= until) {
      phase = 2;
      during?.end();
    }
  };
  const timer = setInterval(tick, 5);
  let n = 0;
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (performance.now() < until) {
        const got = await once(n++);
        const now = performance.now();
        if (now >= from && now < until) counted += got;
      }
    }),
  );
  clearInterval(timer);
  tick();
  return { counted, perSec: (counted * 1000) / DURATION_MS };
};

/** Hub CPU use over the measured window, in % of one core. */
const cpuMeter = (pid: number) => {
  let c0 = 0;
  let t0 = 0;
  let pctUsed = Number.NaN;
  return {
    start() {
      c0 = cpuMs(pid);
      t0 = performance.now();
    },
    end() {
      pctUsed = (100 * (cpuMs(pid) - c0)) / (performance.now() - t0);
    },
    get pct() {
      return Math.round(pctUsed);
    },
  };
};

const fleetlink = async (backend: Backend, rows: Row[]) => {
  const store = benchStore(backend, "tput");
  const hub = await startHub(store.url);
  let fleet: Fleet | undefined;
  let run: RunHandle | undefined;
  const nodes = await startNodes(hub.url, NODES, { workers: 1 }).catch(async (e) => {
    await hub.stop();
    await store.cleanup();
    throw e;
  });
  try {
    fleet = await Fleet.connect({ hub: hub.url, token: TOKEN });
    run = await fleet.createRun();
    const r = run;
    const singles = nodes.ids.map((id) => r.configuration([id]));
    const all = r.configuration(nodes.ids);

    const cpu1 = cpuMeter(hub.pid);
    const single = await measure(
      WINDOW,
      async (i) => {
        await singles[i % NODES]!.call("echo", PAYLOAD, { quorum: "all", timeoutMs: 30_000 });
        return 1;
      },
      cpu1,
    );
    rows.push({
      system: "fleetlink",
      backend,
      mode: "single",
      inFlight: WINDOW,
      roundTrips: single.counted,
      perSec: Math.round(single.perSec),
      hubCpuPct: cpu1.pct,
    });
    console.error(`  ${backend} single: ${Math.round(single.perSec)}/s, hub CPU ${cpu1.pct}%`);

    const cpu2 = cpuMeter(hub.pid);
    const batch = await measure(
      BATCHES,
      async () => {
        const b = await all.broadcast("echo", PAYLOAD, { ttlMs: 30_000 });
        const out = await b.done;
        let ok = 0;
        for (const it of out.values()) if (it.ok) ok++;
        return ok;
      },
      cpu2,
    );
    rows.push({
      system: "fleetlink",
      backend,
      mode: `batch of ${NODES}`,
      inFlight: BATCHES * NODES,
      roundTrips: batch.counted,
      perSec: Math.round(batch.perSec),
      hubCpuPct: cpu2.pct,
    });
    console.error(`  ${backend} batch: ${Math.round(batch.perSec)}/s, hub CPU ${cpu2.pct}%`);
  } finally {
    await fleet?.close();
    await nodes.stop();
    await hub.stop();
    await store.cleanup();
  }
};

const pgBoss = async (rows: Row[]) => {
  const schema = `bench_pgboss_${Math.random().toString(16).slice(2, 12)}`;
  const queue = "bench";
  const producer = await openBoss(PG_URL, schema);
  const consumer = forkWorker(new URL("./pgboss-worker.ts", import.meta.url).pathname);
  try {
    await producer.createQueue(queue);
    await ask(consumer, "ready", {
      start: { url: PG_URL, schema, queue, batch: PGBOSS_BATCH, loops: PGBOSS_LOOPS },
    });
    let sent = 0;
    let s0 = 0;
    let s1 = 0;
    let c0: Promise<number> = Promise.resolve(0);
    let c1: Promise<number> = Promise.resolve(0);
    const marks = {
      start() {
        s0 = sent;
        c0 = ask<number>(consumer, "completed", { count: true });
      },
      end() {
        s1 = sent;
        c1 = ask<number>(consumer, "completed", { count: true });
      },
    };
    await measure(
      WINDOW,
      async () => {
        await producer.send(queue, PAYLOAD);
        sent++;
        return 0;
      },
      marks,
    );
    const completed = (await c1) - (await c0);
    rows.push({
      system: "pg-boss",
      backend: "postgres",
      mode: `send 1, fetch+complete ${PGBOSS_BATCH}`,
      inFlight: WINDOW,
      roundTrips: completed,
      perSec: Math.round((completed * 1000) / DURATION_MS),
    });
    console.error(
      `  pg-boss: sent ${Math.round(((s1 - s0) * 1000) / DURATION_MS)}/s, completed ${Math.round((completed * 1000) / DURATION_MS)}/s`,
    );
  } finally {
    await ask(consumer, "stopped", { stop: true }, 30_000).catch(() => consumer.kill("SIGKILL"));
    await exited(consumer);
    await producer.stop({ graceful: false, close: true });
    await dropSchema(schema);
  }
};

const main = async () => {
  hardLimit(HARD_LIMIT_MS);
  console.log("bench:throughput");
  console.log(
    `  duration ${DURATION_MS} ms per configuration after ${WARMUP_MS} ms warm-up; payload ${JSON.stringify(PAYLOAD).length} B JSON`,
  );
  console.log(
    `  processes: hub = \`fleetlink serve\` (its own process); nodes = ${NODES} NodeAgents in ONE worker process (echo handler); coordinator = this process`,
  );
  console.log(
    `  single: ${WINDOW} one-node calls in flight (quorum all), nodes round robin; batch: ${BATCHES} broadcasts to all ${NODES} nodes in flight, each awaited until every reply is back`,
  );
  console.log(
    `  baseline: pg-boss ${JSON.parse(readFileSync(new URL("../node_modules/pg-boss/package.json", import.meta.url), "utf8")).version} on the same PostgreSQL: ${WINDOW} sends in flight here (one job each), consumer process with ${PGBOSS_LOOPS} loops of fetch(batchSize ${PGBOSS_BATCH}) + complete(ids)`,
  );
  console.log(
    `  postgres: ${redact(PG_URL)} (fresh schemas, dropped after); sqlite: temp file, WAL, synchronous=NORMAL`,
  );
  console.log(`  machine: ${cpus().length} cores, node ${process.version}`);

  const rows: Row[] = [];
  await fleetlink("sqlite", rows);
  if (await pgReachable()) {
    await fleetlink("postgres", rows);
    await pgBoss(rows);
  }

  const boss = rows.find((r) => r.system === "pg-boss");
  const out = rows.map((r) => ({ ...r, vsPgBoss: boss ? round(r.perSec / boss.perSec, 2) : null }));
  console.log("");
  printTable(
    out.map((r) => ({
      system: r.system,
      backend: r.backend,
      mode: r.mode,
      "in flight": r.inFlight,
      "round trips": r.roundTrips,
      "per s": r.perSec,
      "hub CPU": r.hubCpuPct === undefined ? "-" : `${r.hubCpuPct}%`,
      "× pg-boss": r.vsPgBoss === null ? "-" : `${r.vsPgBoss}×`,
    })),
  );
  console.log("");
  console.log(
    `× pg-boss: round trips per second / pg-boss jobs completed per second (batch ${PGBOSS_BATCH}). Target: fleetlink on PostgreSQL ≥ 1×.`,
  );
  for (const r of out.filter((r) => r.backend === "postgres" && r.system === "fleetlink"))
    if (r.vsPgBoss !== null && r.vsPgBoss < 1)
      console.log(`  target missed: postgres ${r.mode}: ${r.vsPgBoss}× pg-boss`);
  console.log("");
  for (const r of out) console.log(JSON.stringify({ bench: "throughput", ...r }));
  process.exit(0);
};

await main();
