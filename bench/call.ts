// bench:call: quorum-call latency (p50/p99) for 3, 5 and 25 nodes, quorum majority and all, through one hub on
// SQLite and on PostgreSQL; and pipelined calls per second (PIPELINE calls in flight, quorum all, 3 nodes; and
// one node per call, round robin over 50 nodes). Each for nodes on the WebSocket stream and on the HTTP node API
// (long polls), in the same run.
// The hub is its own OS process (`fleetlink serve`), the nodes are NodeAgents in one worker process, the
// coordinator (a Fleet) is this process. Baseline in the same run: a raw `ws` round trip relayed through a
// middle process (coordinator → relay → node → relay → coordinator: the hub's path minus the store and the
// protocol) and a one-hop echo. Prints its parameters, a table, then one JSON object per configuration.
//
// Environment: FLEETLINK_BENCH_POSTGRES_URL (or FLEETLINK_TEST_POSTGRES_URL; default
// postgres://root@127.0.0.1:5432/test), BENCH_CALL_DURATION_MS (per configuration, default 3000).
import { Fleet } from "../src/coordinator/fleet.ts";
import type { RunHandle } from "../src/coordinator/run.ts";
import {
  ask,
  type Backend,
  benchStore,
  exited,
  forkWorker,
  hardLimit,
  PG_URL,
  pct,
  pgReachable,
  printTable,
  redact,
  round,
  startHub,
  startNodes,
  TOKEN,
} from "./fleet-worker.ts";
import { wsClient } from "./ws-worker.ts";

const DURATION_MS = Number(process.env.BENCH_CALL_DURATION_MS ?? 3000);
const WARMUP_CALLS = 30;
const MAX_CALLS = 20_000;
const NODE_COUNTS = [3, 5, 25] as const;
/** Nodes of the round-robin throughput row. */
const SPREAD_NODES = 50;
const TRANSPORTS = ["ws", "http"] as const;
const QUORUMS = ["majority", "all"] as const;
const PIPELINE = 32;
const PAYLOAD = { op: "ping", data: "x".repeat(64) };
const HARD_LIMIT_MS = 240_000;

interface Latency {
  n: number;
  p50: number;
  p99: number;
  mean: number;
}

/** Runs `once` back to back for DURATION_MS after a warm-up; latency of each, in ms. */
/** When `once` resolves to a number, that is its latency (the part it timed itself). */
const sequential = async (once: () => Promise<unknown>): Promise<Latency> => {
  for (let i = 0; i < WARMUP_CALLS; i++) await once();
  const ms: number[] = [];
  const until = performance.now() + DURATION_MS;
  while (performance.now() < until && ms.length < MAX_CALLS) {
    const t0 = performance.now();
    const timed = await once();
    ms.push(typeof timed === "number" ? timed : performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return {
    n: ms.length,
    p50: round(pct(ms, 0.5), 3),
    p99: round(pct(ms, 0.99), 3),
    mean: round(ms.reduce((s, v) => s + v, 0) / ms.length, 3),
  };
};

/** `width` loops running `once` back to back for DURATION_MS (after a short warm-up); completions per second. */
const pipelined = async (once: () => Promise<unknown>, width: number): Promise<number> => {
  await Promise.all(Array.from({ length: width }, () => once()));
  let done = 0;
  const t0 = performance.now();
  const until = t0 + DURATION_MS;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (performance.now() < until) {
        await once();
        done++;
      }
    }),
  );
  return (done * 1000) / (performance.now() - t0);
};

interface Row {
  system: string;
  backend: string;
  nodes: number;
  quorum: string;
  calls: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  perSec?: number;
}

const rawBaseline = async (rows: Row[]) => {
  const file = new URL("./ws-worker.ts", import.meta.url).pathname;
  const relay = forkWorker(file, ["relay"]);
  const port = await ask<number>(relay, "port");
  const node = forkWorker(file, ["echo-node", `ws://127.0.0.1:${port}/node`]);
  await ask(node, "ready");
  try {
    const two = await wsClient(`ws://127.0.0.1:${port}/client`);
    const l2 = await sequential(() => two.roundTrip(PAYLOAD));
    rows.push({ system: "raw ws", backend: "-", nodes: 1, quorum: "two-hop", calls: l2.n, ...ms(l2) });
    const rate2 = await pipelined(() => two.roundTrip(PAYLOAD), PIPELINE);
    rows.push(pipeRow("raw ws", "-", 1, `two-hop ×${PIPELINE}`, rate2));
    two.close();
    const one = await wsClient(`ws://127.0.0.1:${port}/echo`);
    const l1 = await sequential(() => one.roundTrip(PAYLOAD));
    rows.push({ system: "raw ws", backend: "-", nodes: 1, quorum: "one-hop", calls: l1.n, ...ms(l1) });
    one.close();
  } finally {
    relay.kill();
    node.kill();
    await Promise.all([exited(relay), exited(node)]);
  }
};

const ms = (l: Latency) => ({ p50Ms: l.p50, p99Ms: l.p99, meanMs: l.mean });
const pipeRow = (system: string, backend: string, nodes: number, quorum: string, rate: number): Row => ({
  system,
  backend,
  nodes,
  quorum,
  calls: Math.round((rate * DURATION_MS) / 1000),
  p50Ms: Number.NaN,
  p99Ms: Number.NaN,
  meanMs: round(PIPELINE * (1000 / rate), 3),
  perSec: Math.round(rate),
});

const fleetlink = async (backend: Backend, transport: (typeof TRANSPORTS)[number], rows: Row[]) => {
  const system = transport === "ws" ? "fleetlink" : "fleetlink http";
  const store = benchStore(backend, `call_${transport}`);
  const hub = await startHub(store.url);
  let fleet: Fleet | undefined;
  let run: RunHandle | undefined;
  const nodes = await startNodes(hub.url, SPREAD_NODES, { workers: 1, transport }).catch(async (e) => {
    await hub.stop();
    await store.cleanup();
    throw e;
  });
  try {
    fleet = await Fleet.connect({ hub: hub.url, token: TOKEN });
    run = await fleet.createRun();
    for (const n of NODE_COUNTS)
      for (const quorum of QUORUMS) {
        const cfg = run.configuration(nodes.ids.slice(0, n));
        const l = await sequential(() => cfg.call("echo", PAYLOAD, { quorum, timeoutMs: 10_000 }));
        rows.push({ system, backend, nodes: n, quorum, calls: l.n, ...ms(l) });
        console.error(`  ${system} ${backend} nodes=${n} quorum=${quorum}: p50 ${l.p50} ms, p99 ${l.p99} ms`);
      }
    if (transport === "ws") {
      // A run's first push also moves the run from pending to running (on PostgreSQL by the transaction path
      // rather than the one-statement push): the first call of a fresh run, timed alone (not the create/finish
      // around it), against later calls of a long-lived run (the rows above).
      const first = await sequential(async () => {
        const fresh = await fleet!.createRun();
        const t0 = performance.now();
        await fresh
          .configuration(nodes.ids.slice(0, 3))
          .call("echo", PAYLOAD, { quorum: "all", timeoutMs: 10_000 });
        const took = performance.now() - t0;
        await fresh.finish();
        await fresh.close();
        return took;
      });
      rows.push({
        system,
        backend,
        nodes: 3,
        quorum: "all, 1st call of a run",
        calls: first.n,
        ...ms(first),
      });
      console.error(
        `  ${system} ${backend} first call of a fresh run: p50 ${first.p50} ms, p99 ${first.p99} ms`,
      );
    }
    const cfg = run.configuration(nodes.ids.slice(0, 3));
    const rate = await pipelined(
      () => cfg.call("echo", PAYLOAD, { quorum: "all", timeoutMs: 10_000 }),
      PIPELINE,
    );
    rows.push(pipeRow(system, backend, 3, `all ×${PIPELINE}`, rate));
    console.error(`  ${system} ${backend} pipelined ×${PIPELINE}: ${Math.round(rate)} calls/s`);
    const one = nodes.ids.map((id) => run!.configuration([id]));
    let next = 0;
    const spread = await pipelined(
      () => one[next++ % one.length]!.call("echo", PAYLOAD, { quorum: "all", timeoutMs: 10_000 }),
      PIPELINE,
    );
    rows.push(pipeRow(system, backend, SPREAD_NODES, `1 of ${SPREAD_NODES} ×${PIPELINE}`, spread));
    console.error(
      `  ${system} ${backend} round robin over ${SPREAD_NODES} ×${PIPELINE}: ${Math.round(spread)} calls/s`,
    );
  } finally {
    await fleet?.close();
    await nodes.stop();
    await hub.stop();
    await store.cleanup();
  }
};

const main = async () => {
  hardLimit(HARD_LIMIT_MS);
  console.log("bench:call");
  console.log(
    `  duration ${DURATION_MS} ms per configuration after ${WARMUP_CALLS} warm-up calls; payload ${JSON.stringify(PAYLOAD).length} B JSON; call timeoutMs 10000`,
  );
  console.log(
    `  processes: hub = \`fleetlink serve\` (its own process); nodes = ${SPREAD_NODES} NodeAgents in ONE worker process (echo handler, heartbeat 5000 ms), on the stream (fleetlink) or the HTTP node API (fleetlink http: long polls, waitMs 20000); coordinator = this process (Fleet, one run)`,
  );
  console.log("  configurations: the first 3 / 5 / 25 nodes, quorum majority and all, calls one at a time");
  console.log(
    `  pipelined: ${PIPELINE} calls in flight, quorum all, 3 nodes; and one node per call, round robin over ${SPREAD_NODES}`,
  );
  console.log(
    "  baseline: raw ws, bench → relay process → echo process → relay → bench (two-hop), bench ↔ relay (one-hop)",
  );
  console.log(
    `  postgres: ${redact(PG_URL)} (fresh schema, dropped after); sqlite: temp file, WAL, synchronous=NORMAL`,
  );
  console.log(`  machine: ${(await import("node:os")).cpus().length} cores, node ${process.version}`);

  const rows: Row[] = [];
  await rawBaseline(rows);
  const pg = await pgReachable();
  for (const transport of TRANSPORTS) {
    await fleetlink("sqlite", transport, rows);
    if (pg) await fleetlink("postgres", transport, rows);
  }

  const raw2 = rows.find((r) => r.system === "raw ws" && r.quorum === "two-hop")!;
  const rawPipe = rows.find((r) => r.system === "raw ws" && r.perSec !== undefined)!;
  const out = rows.map((r) => ({
    ...r,
    vsRawTwoHop:
      r.perSec === undefined ? round(r.p50Ms / raw2.p50Ms, 1) : round(rawPipe.perSec! / r.perSec, 1),
  }));
  console.log("");
  printTable(
    out.map((r) => ({
      system: r.system,
      backend: r.backend,
      nodes: r.nodes,
      quorum: r.quorum,
      calls: r.calls,
      "p50 ms": Number.isNaN(r.p50Ms) ? "-" : r.p50Ms.toFixed(2),
      "p99 ms": Number.isNaN(r.p99Ms) ? "-" : r.p99Ms.toFixed(2),
      "calls/s": r.perSec ?? "-",
      "× raw two-hop": `${r.vsRawTwoHop}×`,
    })),
  );
  console.log("");
  console.log(
    "× raw two-hop: call p50 / raw two-hop p50 for latency rows; raw two-hop pipelined rate / calls per second for ×32 rows. Target: ≤ 4×.",
  );
  for (const r of out.filter((r) => r.system === "fleetlink" && r.perSec === undefined))
    if (r.vsRawTwoHop > 4)
      console.log(
        `  target missed: ${r.backend} ${r.nodes} nodes ${r.quorum}: ${r.vsRawTwoHop}× raw two-hop p50`,
      );
  // The HTTP node API against the stream, configuration by configuration. Target: p50 ≤ 2× the stream's.
  console.log("");
  console.log(
    "http ÷ stream: p50 and p99 of the HTTP node API over the stream's, same backend and configuration",
  );
  for (const h of out.filter((r) => r.system === "fleetlink http")) {
    const w = out.find(
      (r) =>
        r.system === "fleetlink" && r.backend === h.backend && r.nodes === h.nodes && r.quorum === h.quorum,
    );
    if (!w) continue;
    const ratio =
      h.perSec === undefined
        ? `p50 ${round(h.p50Ms / w.p50Ms, 2)}×, p99 ${round(h.p99Ms / w.p99Ms, 2)}×`
        : `throughput ${round(h.perSec / w.perSec!, 2)}×`;
    const miss = h.perSec === undefined && h.p50Ms > 2 * w.p50Ms ? "  (target missed: p50 > 2×)" : "";
    console.log(`  ${h.backend} ${h.nodes} nodes ${h.quorum}: ${ratio}${miss}`);
  }
  console.log("");
  for (const r of out) console.log(JSON.stringify({ bench: "call", ...r }));
  process.exit(0);
};

await main();
