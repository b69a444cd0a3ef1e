// bench:peers (issue 11): fleetlink on SQLite and PostgreSQL against a raw ws relay, NATS core, NATS JetStream,
// RabbitMQ, BullMQ and pg-boss, on the local servers, in one run, interleaved. Three workloads:
//   sequential  1 worker, one request at a time: round-trip p50/p99;
//   fanout      3 workers, all must answer (fleetlink: one quorum-"all" call over 3 nodes; peers: 3 work items,
//               wait for the 3 replies): p50/p99;
//   throughput  50 workers, 256 requests in flight, one instruction per request: calls/s in a fixed window.
// Each workload runs ROUNDS short rounds; every round visits every system once (the starting system rotates),
// so drift on this shared machine hits all of them alike; the tables show the median over rounds. The workers
// of each system live in a worker process of their own; this process is the coordinator/producer of every
// system. CPU per call is read from /proc/<pid>/stat around each measured window: the fleetlink hub, the
// middle (hub / relay / broker / database), this coordinator, the worker process.
// Method and fairness: docs/bench-peers.md.
//
// Environment: BENCH_PEERS_SCALE (default 1, ≈ 5 minutes; 0.2 shortens every window to a fifth),
// BENCH_PEERS_ONLY (comma-separated system names, default all), BENCH_PEERS_TIMEOUT_MS (hard limit; default
// from the scale), FLEETLINK_BENCH_POSTGRES_URL, BENCH_PEERS_NATS_URL, BENCH_PEERS_AMQP_URL,
// BENCH_PEERS_REDIS_URL.
import { cpus, loadavg } from "node:os";
import { PG_URL, pct, printTable, redact, round } from "./fleet-worker.ts";
import { bullSystem } from "./peers-bullmq.ts";
import { clockTicks, cpuMeter, median, PAYLOAD, type System } from "./peers-common.ts";
import { fleetlinkSystem } from "./peers-fleetlink.ts";
import { jetStreamSystem, NATS_URL, natsCoreSystem } from "./peers-nats.ts";
import { pgBossSystem } from "./peers-pgboss.ts";
import { AMQP_URL, rabbitSystem } from "./peers-rabbitmq.ts";
import { wsSystem } from "./peers-ws.ts";

// Order of the tables; also the order systems are set up in.
const FACTORIES = {
  "raw-ws": wsSystem,
  "nats-core": natsCoreSystem,
  jetstream: jetStreamSystem,
  rabbitmq: rabbitSystem,
  bullmq: bullSystem,
  "pg-boss": pgBossSystem,
  "fleetlink-sqlite": () => fleetlinkSystem("sqlite"),
  "fleetlink-postgres": () => fleetlinkSystem("postgres"),
  "fleetlink-postgres-2r": () => fleetlinkSystem("postgres", 2),
} as const satisfies Record<string, () => Promise<System>>;
type Name = keyof typeof FACTORIES;
const ALL = Object.keys(FACTORIES) as Name[];
const FLEETLINK: Name[] = ["fleetlink-sqlite", "fleetlink-postgres", "fleetlink-postgres-2r"];

const parseScale = (): number => {
  const raw = process.env.BENCH_PEERS_SCALE ?? "1";
  const v = Number(raw);
  if (!Number.isFinite(v) || v <= 0 || v > 10)
    throw new Error(`BENCH_PEERS_SCALE must be a number in (0, 10], got ${JSON.stringify(raw)}`);
  return v;
};
const parseOnly = (): Name[] => {
  const raw = process.env.BENCH_PEERS_ONLY;
  if (!raw) return ALL;
  const names = raw
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = names.filter((n) => !(n in FACTORIES));
  if (bad.length > 0 || names.length === 0)
    throw new Error(
      `BENCH_PEERS_ONLY: unknown system ${bad.join(", ") || "(none given)"}; known: ${ALL.join(", ")}`,
    );
  return ALL.filter((n) => names.includes(n));
};

const SCALE = parseScale();
const ONLY = parseOnly();
const ROUNDS = SCALE < 0.5 ? 3 : 5;
const TPUT_ROUNDS = SCALE < 0.5 ? 3 : 4;
const LAT_ROUND_MS = Math.round(1500 * SCALE);
const WARMUP_MS = Math.round(300 * SCALE);
const WARMUP_MIN_CALLS = 20;
const MAX_SAMPLES = 200_000;
const TPUT_WORKERS = 50;
const IN_FLIGHT = 256;
const TPUT_WARM_MS = Math.round(750 * SCALE);
const TPUT_WINDOW_MS = Math.round(3000 * SCALE);
const HARD_LIMIT_MS = Number(process.env.BENCH_PEERS_TIMEOUT_MS ?? Math.round(150_000 + 450_000 * SCALE));

// ---- lifetime: every system closed, every child killed, whatever happens ----

const open: System[] = [];
let phase = "setup";
let closing: Promise<void> | undefined;
const closeAll = (capMs: number): Promise<void> => {
  closing ??= (async () => {
    const all = open.splice(0).reverse();
    await Promise.race([
      Promise.allSettled(all.map((s) => s.close())).then((rs) => {
        for (const [i, r] of rs.entries())
          if (r.status === "rejected") console.error(`closing ${all[i]!.name}: ${String(r.reason)}`);
      }),
      new Promise((r) => setTimeout(r, capMs).unref()),
    ]);
  })();
  return closing;
};
// process.exit runs fleet-worker's exit hook, which SIGKILLs every child still alive (hubs, workers, relay).
const die = async (code: number, why: string) => {
  console.error(why);
  await closeAll(10_000);
  process.exit(code);
};
setTimeout(
  () => void die(2, `bench:peers exceeded its ${HARD_LIMIT_MS} ms limit during ${phase}; stopping`),
  HARD_LIMIT_MS,
).unref();
for (const sig of ["SIGINT", "SIGTERM"] as const)
  process.once(sig, () => void die(130, `bench:peers: ${sig}`));

// ---- measurement ----

interface Cpu {
  hub: number;
  middle: number;
  coordinator: number;
  worker: number;
}
/** CPU per call, ms, over a window started now: the fleetlink hub, the middle, this process, the workers. */
const meterCpu = (s: System) => {
  const hubPid = s.hubPid();
  const hub = cpuMeter(hubPid === undefined ? [] : [hubPid]);
  const middle = cpuMeter(s.middlePids());
  const worker = cpuMeter(s.workerPids());
  const c0 = process.cpuUsage();
  return (calls: number): Cpu => {
    const c = process.cpuUsage(c0);
    const per = (ms: number) => (calls > 0 ? ms / calls : Number.NaN);
    return {
      hub: hubPid === undefined ? Number.NaN : per(hub.end()),
      middle: per(middle.end()),
      coordinator: per((c.user + c.system) / 1000),
      worker: per(worker.end()),
    };
  };
};

interface Round {
  calls: number;
  errors: number;
  p50: number;
  p99: number;
  perSec: number;
  cpu: Cpu;
}

const errorsSeen = new Map<string, string>();
const noteError = (s: System, e: unknown) => {
  if (!errorsSeen.has(s.name)) {
    errorsSeen.set(s.name, String((e as Error).message ?? e));
    console.error(`  ${s.name}: call failed: ${String((e as Error).message ?? e)}`);
  }
};

/** Calls `once` back to back for `ms` (after `warmMs` unmeasured): latency percentiles and CPU per call. */
const latencyRound = async (s: System, once: (i: number) => Promise<void>, ms: number, warmMs: number) => {
  let i = 0;
  let errors = 0;
  const warmUntil = performance.now() + warmMs;
  for (let n = 0; performance.now() < warmUntil || n < (warmMs > 0 ? WARMUP_MIN_CALLS : 0); n++)
    await once(i++).catch((e) => noteError(s, e));
  const lat: number[] = [];
  const end = meterCpu(s);
  const until = performance.now() + ms;
  while (performance.now() < until && lat.length < MAX_SAMPLES) {
    const t0 = performance.now();
    try {
      await once(i++);
      lat.push(performance.now() - t0);
    } catch (e) {
      errors++;
      noteError(s, e);
    }
  }
  const cpu = end(lat.length);
  lat.sort((a, b) => a - b);
  return { calls: lat.length, errors, p50: pct(lat, 0.5), p99: pct(lat, 0.99), perSec: Number.NaN, cpu };
};

/** IN_FLIGHT loops of `s.call` for TPUT_WARM_MS + TPUT_WINDOW_MS; completions inside the window per second. */
const throughputRound = async (s: System): Promise<Round> => {
  const t0 = performance.now();
  const from = t0 + TPUT_WARM_MS;
  const until = from + TPUT_WINDOW_MS;
  let counted = 0;
  let errors = 0;
  let end: ((calls: number) => Cpu) | undefined;
  let cpu: Cpu | undefined;
  // The window's edges are marked by a timer, not by the loops, so the CPU readings bracket exactly it.
  const tick = () => {
    const now = performance.now();
    if (!end && now >= from) end = meterCpu(s);
    if (end && !cpu && now >= until) cpu = end(counted);
  };
  const timer = setInterval(tick, 5);
  let n = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < until) {
        try {
          await s.call(n++);
        } catch (e) {
          errors++;
          noteError(s, e);
          continue;
        }
        const now = performance.now();
        if (now >= from && now < until) counted++;
      }
    }),
  );
  clearInterval(timer);
  tick();
  return {
    calls: counted,
    errors,
    p50: Number.NaN,
    p99: Number.NaN,
    perSec: (counted * 1000) / TPUT_WINDOW_MS,
    cpu: cpu ?? end!(counted),
  };
};

// ---- workloads ----

interface Workload {
  key: "sequential" | "fanout" | "throughput";
  title: string;
  workers: number;
  rounds: number;
  round(s: System, first: boolean): Promise<Round>;
}

const WORKLOADS: Workload[] = [
  {
    key: "sequential",
    title: "Sequential round trip, 1 worker, one request at a time",
    workers: 1,
    rounds: ROUNDS,
    round: (s, first) => latencyRound(s, (i) => s.call(i), LAT_ROUND_MS, first ? WARMUP_MS : 0),
  },
  {
    key: "fanout",
    title:
      "Fan-out to 3 workers, all must answer (fleetlink: quorum all over 3 nodes; peers: 3 requests, 3 replies)",
    workers: 3,
    rounds: ROUNDS,
    round: (s, first) => latencyRound(s, () => s.fanout(), LAT_ROUND_MS, first ? WARMUP_MS : 0),
  },
  {
    key: "throughput",
    title: `Throughput, ${TPUT_WORKERS} workers, ${IN_FLIGHT} requests in flight, one instruction per request`,
    workers: TPUT_WORKERS,
    rounds: TPUT_ROUNDS,
    round: (s) => throughputRound(s),
  },
];

interface Summary {
  system: string;
  durability: string;
  rounds: number;
  calls: number;
  errors: number;
  p50: number;
  p50Min: number;
  p50Max: number;
  p99: number;
  perSec: number;
  perSecMin: number;
  perSecMax: number;
  cpuMsPerCall: Cpu;
}

const summarize = (s: System, rounds: Round[]): Summary => {
  const m = (f: (r: Round) => number) => median(rounds.map(f));
  const finite = (f: (r: Round) => number) => rounds.map(f).filter(Number.isFinite);
  return {
    system: s.name,
    durability: s.durability,
    rounds: rounds.length,
    calls: rounds.reduce((a, r) => a + r.calls, 0),
    errors: rounds.reduce((a, r) => a + r.errors, 0),
    p50: m((r) => r.p50),
    p50Min: Math.min(...finite((r) => r.p50)),
    p50Max: Math.max(...finite((r) => r.p50)),
    p99: m((r) => r.p99),
    perSec: m((r) => r.perSec),
    perSecMin: Math.min(...finite((r) => r.perSec)),
    perSecMax: Math.max(...finite((r) => r.perSec)),
    cpuMsPerCall: {
      hub: m((r) => r.cpu.hub),
      middle: m((r) => r.cpu.middle),
      coordinator: m((r) => r.cpu.coordinator),
      worker: m((r) => r.cpu.worker),
    },
  };
};

const runWorkload = async (w: Workload, systems: System[]): Promise<Summary[]> => {
  phase = `${w.key}: starting ${w.workers} worker(s) per system`;
  for (const s of systems) await s.setWorkers(w.workers);
  const rounds = new Map<string, Round[]>(systems.map((s) => [s.name, []]));
  for (let r = 0; r < w.rounds; r++) {
    const order = systems.map((_, i) => systems[(i + r) % systems.length]!);
    for (const s of order) {
      phase = `${w.key} round ${r + 1}/${w.rounds}: ${s.name}`;
      const got = await w.round(s, r === 0);
      rounds.get(s.name)!.push(got);
      const what = w.key === "throughput" ? `${Math.round(got.perSec)}/s` : `p50 ${got.p50.toFixed(3)} ms`;
      console.error(
        `  ${w.key} round ${r + 1}/${w.rounds} ${s.name}: ${what}${got.errors ? `, ${got.errors} errors` : ""}`,
      );
    }
  }
  return systems.map((s) => summarize(s, rounds.get(s.name)!));
};

// ---- output ----

const f = (v: number, digits: number) => (Number.isFinite(v) ? v.toFixed(digits) : "-");
/** How many times better fleetlink is than `peer`: above 1, fleetlink is ahead. */
const better = (key: Workload["key"], fl: Summary | undefined, peer: Summary): number =>
  !fl || fl.system === peer.system
    ? Number.NaN
    : key === "throughput"
      ? fl.perSec / peer.perSec
      : peer.p50 / fl.p50;

const printWorkload = (w: Workload, rows: Summary[]) => {
  const fls = FLEETLINK.map((n) => rows.find((r) => r.system === n));
  console.log("");
  console.log(`## ${w.title}`);
  printTable(
    rows.map((r) => ({
      system: r.system,
      durability: r.durability,
      ...(w.key === "throughput"
        ? {
            "calls/s": Math.round(r.perSec),
            "rounds min–max": `${Math.round(r.perSecMin)}–${Math.round(r.perSecMax)}`,
          }
        : {
            "p50 ms": f(r.p50, 3),
            "p99 ms": f(r.p99, 3),
            "p50 rounds min–max": `${f(r.p50Min, 3)}–${f(r.p50Max, 3)}`,
          }),
      calls: r.calls,
      errors: r.errors,
      "hub CPU ms/call": f(r.cpuMsPerCall.hub, 3),
      "middle CPU ms/call": f(r.cpuMsPerCall.middle, 3),
      "coord CPU ms/call": f(r.cpuMsPerCall.coordinator, 3),
      "worker CPU ms/call": f(r.cpuMsPerCall.worker, 3),
      ...Object.fromEntries(
        FLEETLINK.filter((_, i) => fls[i]).map((n, i) => [
          `${n.replace("fleetlink-", "fl-")} vs`,
          Number.isFinite(better(w.key, fls[i], r)) ? `${better(w.key, fls[i], r).toFixed(2)}×` : "-",
        ]),
      ),
    })),
  );
};

interface Target {
  what: string;
  value: number;
  ok: boolean;
}

/** Issue 20's targets, checked against this run (where the systems they name were measured). */
const targets = (res: Record<Workload["key"], Summary[]>): Target[] => {
  const get = (k: Workload["key"], n: string) => res[k]?.find((r) => r.system === n);
  const out: Target[] = [];
  const add = (what: string, value: number | undefined, ok: (v: number) => boolean) => {
    if (value !== undefined && Number.isFinite(value))
      out.push({ what, value: round(value, 3), ok: ok(value) });
  };
  const js = get("sequential", "jetstream")?.p50;
  const seqSqlite = get("sequential", "fleetlink-sqlite")?.p50;
  const seqPg = get("sequential", "fleetlink-postgres")?.p50;
  if (js !== undefined) {
    add(`sequential fleetlink-sqlite p50 ≤ JetStream's (${f(js, 3)} ms)`, seqSqlite, (v) => v <= js);
    add(
      `sequential fleetlink-postgres p50 ≤ 2.5× JetStream's (${f(2.5 * js, 3)} ms)`,
      seqPg,
      (v) => v <= 2.5 * js,
    );
  }
  add("sequential fleetlink-postgres p50 ≤ 2.0 ms", seqPg, (v) => v <= 2);
  add("fan-out fleetlink-postgres p50 ≤ 3.0 ms", get("fanout", "fleetlink-postgres")?.p50, (v) => v <= 3);
  const tput = (n: string) => get("throughput", n)?.perSec;
  add("throughput fleetlink-postgres ≥ 5000 calls/s", tput("fleetlink-postgres"), (v) => v >= 5000);
  add("throughput fleetlink-sqlite ≥ 10000 calls/s", tput("fleetlink-sqlite"), (v) => v >= 10_000);
  for (const peer of ["rabbitmq", "jetstream"]) {
    const p = tput(peer);
    if (p !== undefined)
      add(
        `throughput fleetlink-postgres ≥ ${peer} (${Math.round(p)}/s)`,
        tput("fleetlink-postgres"),
        (v) => v >= p,
      );
  }
  const rmq = tput("rabbitmq");
  if (rmq !== undefined)
    add(
      `throughput fleetlink-sqlite ≥ 2× rabbitmq (${Math.round(2 * rmq)}/s)`,
      tput("fleetlink-sqlite"),
      (v) => v >= 2 * rmq,
    );
  const one = tput("fleetlink-postgres");
  if (one !== undefined)
    add(
      `throughput fleetlink-postgres-2r ≥ 1.6× one replica (${Math.round(1.6 * one)}/s)`,
      tput("fleetlink-postgres-2r"),
      (v) => v >= 1.6 * one,
    );
  // The issue's "hub CPU per call" counts what serving a call costs the machine: the middle column (the hub,
  // and on PostgreSQL every postgres process too), at throughput.
  add(
    "middle CPU per call at throughput (sqlite: hub) ≤ 0.15 ms",
    get("throughput", "fleetlink-sqlite")?.cpuMsPerCall.middle,
    (v) => v <= 0.15,
  );
  add(
    "middle CPU per call at throughput (postgres: hub + database) ≤ 0.3 ms",
    get("throughput", "fleetlink-postgres")?.cpuMsPerCall.middle,
    (v) => v <= 0.3,
  );
  return out;
};

// ---- main ----

const main = async () => {
  const started = new Date();
  const t0 = performance.now();
  console.log("bench:peers");
  console.log(`  scale ${SCALE}; systems: ${ONLY.join(", ")}`);
  console.log(
    `  sequential and fan-out: ${ROUNDS} rounds × ${LAT_ROUND_MS} ms per system (warm-up ${WARMUP_MS} ms and ≥ ${WARMUP_MIN_CALLS} calls before round 1), 1 and 3 workers`,
  );
  console.log(
    `  throughput: ${TPUT_ROUNDS} rounds × (${TPUT_WARM_MS} ms warm-up + ${TPUT_WINDOW_MS} ms window) per system, ${TPUT_WORKERS} workers, ${IN_FLIGHT} requests in flight`,
  );
  console.log(
    "  interleaved: each round visits every system once, the first system rotating; a table cell is the median over rounds",
  );
  console.log(
    `  payload ${JSON.stringify(PAYLOAD).length} B JSON echoed back; request timeout ${10_000} ms (a failure is counted in 'errors')`,
  );
  console.log(
    "  processes: the coordinator/producer of every system is this process; each system's workers are in one worker process of their own; fleetlink's hub is `fleetlink serve`, raw-ws's relay its own process",
  );
  console.log(
    `  CPU: utime+stime from /proc/<pid>/stat (CLK_TCK ${clockTicks()}) around each measured window, per completed call: hub = fleetlink hub process; middle = what sits between coordinator and workers (hub (+ every postgres process), relay, nats-server, beam.smp, redis-server, or every postgres process for pg-boss; postgres is shared with anything else using it); coord = this process (process.cpuUsage); worker = the worker process`,
  );
  console.log(
    `  servers: postgres ${redact(PG_URL)}, nats ${NATS_URL}, amqp ${AMQP_URL.replace(/:[^:@/]*@/, ":***@")}, redis ${process.env.BENCH_PEERS_REDIS_URL ?? "redis://127.0.0.1:6379"}`,
  );
  console.log(
    `  machine: ${cpus().length} cores, load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}, node ${process.version}; hard limit ${HARD_LIMIT_MS} ms`,
  );

  const systems: System[] = [];
  for (const name of ONLY) {
    phase = `setup of ${name}`;
    try {
      const s = await FACTORIES[name]();
      open.push(s);
      systems.push(s);
    } catch (e) {
      throw new Error(`${name}: ${(e as Error).message} (leave it out with BENCH_PEERS_ONLY)`, { cause: e });
    }
  }
  console.log("  versions and durability:");
  for (const s of systems) {
    console.log(`    ${s.name}: ${s.version}`);
    console.log(`      durability: ${s.durabilityNote}`);
  }

  const results = {} as Record<Workload["key"], Summary[]>;
  for (const w of WORKLOADS) results[w.key] = await runWorkload(w, systems);
  phase = "closing";
  await closeAll(30_000);

  for (const w of WORKLOADS) printWorkload(w, results[w.key]);
  console.log("");
  console.log(
    "fl-sqlite vs / fl-postgres vs: how many times better fleetlink is than the row's system (peer p50 ÷ fleetlink p50 for latency, fleetlink calls/s ÷ peer calls/s for throughput); below 1× the peer is ahead.",
  );
  const tg = targets(results);
  if (tg.length > 0) {
    console.log("");
    console.log("Issue 20 targets in this run:");
    for (const t of tg) console.log(`  ${t.ok ? "met   " : "missed"} ${t.what}: ${t.value}`);
  }
  for (const [name, msg] of errorsSeen) console.log(`  errors: ${name}: first failure: ${msg}`);
  console.log("");
  console.log(
    JSON.stringify({
      bench: "peers",
      date: started.toISOString(),
      seconds: round((performance.now() - t0) / 1000, 1),
      params: {
        scale: SCALE,
        rounds: ROUNDS,
        throughputRounds: TPUT_ROUNDS,
        latencyRoundMs: LAT_ROUND_MS,
        throughputWarmMs: TPUT_WARM_MS,
        throughputWindowMs: TPUT_WINDOW_MS,
        throughputWorkers: TPUT_WORKERS,
        inFlight: IN_FLIGHT,
        node: process.version,
        cores: cpus().length,
      },
      systems: Object.fromEntries(
        systems.map((s) => [s.name, { version: s.version, durability: s.durabilityNote }]),
      ),
      results,
      targets: tg,
    }),
  );
  process.exit(errorsSeen.size > 0 ? 1 : 0);
};

main().catch(
  (e: unknown) => void die(1, `bench:peers failed during ${phase}: ${String((e as Error).stack ?? e)}`),
);
