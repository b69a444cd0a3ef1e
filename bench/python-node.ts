// bench:python-node: the Python node (clients/python, HTTP long poll) against the TypeScript NodeAgent on the
// WebSocket stream, measured in the same run through one hub (its own OS process) on SQLite: p50/p99 of
// sequential calls to one node; pipelined calls per second to one node (PIPELINE in flight) with the node
// process's CPU per call; and sequential quorum-all calls and pipelined throughput over FLEET nodes of each kind,
// with the CPU per call summed over the node processes (and the hub's, to tell the two apart). Prints its parameters, a table, then one JSON object per row.
//
// Environment: BENCH_CALL_DURATION_MS (per measurement, default 3000), BENCH_PY_NODES (FLEET, default 10).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Fleet } from "../src/coordinator/fleet.ts";
import {
  benchStore,
  cpuMs,
  ENROLL_TOKEN,
  exited,
  hardLimit,
  pct,
  printTable,
  round,
  startHub,
  startNodes,
  TOKEN,
} from "./fleet-worker.ts";

const DURATION_MS = Number(process.env.BENCH_CALL_DURATION_MS ?? 3000);
const FLEET = Number(process.env.BENCH_PY_NODES ?? 10);
const WARMUP_CALLS = 20;
const PIPELINE = 32;
const PAYLOAD = { op: "ping", data: "x".repeat(64) };
const PYTHON = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
const PY_CLIENT = join(import.meta.dirname, "../clients/python");

interface Row {
  node: string;
  nodes: number;
  mode: string;
  calls: number;
  p50Ms: number | string;
  p99Ms: number | string;
  perSec: number | string;
  cpuMsPerCall: number;
  hubCpuMsPerCall: number;
}

/** `width` loops calling back to back for DURATION_MS after a warm-up; latencies (ms) and calls per second. */
const measure = async (once: () => Promise<unknown>, width: number) => {
  for (let i = 0; i < WARMUP_CALLS; i++) await once();
  const ms: number[] = [];
  const t0 = performance.now();
  const until = t0 + DURATION_MS;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (performance.now() < until) {
        const t = performance.now();
        await once();
        ms.push(performance.now() - t);
      }
    }),
  );
  const perSec = (ms.length * 1000) / (performance.now() - t0);
  ms.sort((a, b) => a - b);
  return {
    n: ms.length,
    p50: round(pct(ms, 0.5), 2),
    p99: round(pct(ms, 0.99), 2),
    perSec: Math.round(perSec),
  };
};

/** `count` Python nodes, each its own process; resolves with their ids once all are online. */
const startPyNodes = async (hub: string, count: number, dir: string) => {
  const kids: ChildProcess[] = [];
  const ids = await Promise.all(
    Array.from(
      { length: count },
      (_, i) =>
        new Promise<string>((resolve, reject) => {
          const child = spawn(
            PYTHON,
            [
              "-m",
              "fleetlink_node",
              "--hub",
              hub,
              "--token",
              ENROLL_TOKEN,
              "--handlers",
              "fleetlink_node.conformance",
              "--name",
              `py-bench-${i}`,
              "--identity",
              join(dir, `py-${i}.json`),
              "--log-level",
              "warning",
            ],
            {
              cwd: PY_CLIENT,
              stdio: ["ignore", "pipe", "inherit"],
              env: { ...process.env, FLEETLINK_WORK_DIR: "" },
            },
          );
          kids.push(child);
          let out = "";
          child.stdout!.on("data", (d) => {
            out += d;
            const m = /online as (\S+)/.exec(out);
            if (m) resolve(m[1]!);
          });
          child.once("exit", (code) => reject(new Error(`python node ${i} exited ${code}`)));
        }),
    ),
  );
  return {
    ids,
    pids: kids.map((k) => k.pid!),
    stop: async () => {
      for (const k of kids) k.kill("SIGTERM");
      await Promise.all(kids.map((k) => exited(k)));
    },
  };
};

const main = async () => {
  hardLimit(180_000);
  console.log(
    `bench:python-node  duration=${DURATION_MS} ms per measurement, pipeline=${PIPELINE}, fleet=${FLEET} nodes, ` +
      `python=${PYTHON}, store=sqlite, payload=${JSON.stringify(PAYLOAD).length} bytes`,
  );
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-bench-py-"));
  const store = benchStore("sqlite", "python-node");
  const hub = await startHub(store.url);
  const ts = await startNodes(hub.url, FLEET, { workers: 1 });
  const py = await startPyNodes(hub.url, FLEET, dir);
  const fleet = await Fleet.connect({ hub: hub.url, token: TOKEN });
  const rows: Row[] = [];
  try {
    const run = await fleet.createRun();
    for (const [name, nodes] of [
      ["ts (ws stream)", ts],
      ["python (http)", py],
    ] as const) {
      for (const n of [1, FLEET]) {
        const cfg = run.configuration(nodes.ids.slice(0, n));
        const call = () => cfg.call("echo", PAYLOAD, { quorum: "all", timeoutMs: 10_000 });
        // One process holds every TypeScript node; each Python node is its own process.
        const pids = name.startsWith("ts") ? nodes.pids : nodes.pids.slice(0, n);
        for (const width of [1, PIPELINE]) {
          const cpu0 = pids.reduce((s, p) => s + cpuMs(p), 0);
          const hub0 = cpuMs(hub.pid);
          const l = await measure(call, width);
          const cpu = pids.reduce((s, p) => s + cpuMs(p), 0) - cpu0;
          const hubCpu = cpuMs(hub.pid) - hub0;
          rows.push({
            node: name,
            nodes: n,
            mode: width === 1 ? "sequential" : `pipelined ×${width}`,
            calls: l.n,
            p50Ms: l.p50,
            p99Ms: l.p99,
            perSec: l.perSec,
            cpuMsPerCall: round(cpu / (l.n + WARMUP_CALLS), 3),
            hubCpuMsPerCall: round(hubCpu / (l.n + WARMUP_CALLS), 3),
          });
          console.error(`  ${name} nodes=${n} width=${width}: p50 ${l.p50} ms, ${l.perSec}/s`);
        }
      }
    }
  } finally {
    await fleet.close();
    await py.stop();
    await ts.stop();
    await hub.stop();
    await store.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
  const base = rows.find((r) => r.node.startsWith("ts") && r.nodes === 1 && r.mode === "sequential")!;
  const pyOne = rows.find((r) => r.node.startsWith("python") && r.nodes === 1 && r.mode === "sequential")!;
  printTable(rows.map((r) => ({ ...r })));
  console.log(
    `\npython (http) / ts (ws) sequential p50, 1 node: ${round(Number(pyOne.p50Ms) / Number(base.p50Ms), 2)}×`,
  );
  for (const r of rows) console.log(JSON.stringify(r));
};

await main();
