// Profiling aid (not a benchmark): sequential calls against one hub for DURATION ms; run with
// NODE_OPTIONS=--cpu-prof --cpu-prof-dir=/tmp/prof to profile every process.

import { spawn } from "node:child_process";
import { benchStore, ENROLL_TOKEN, startNodes, TOKEN } from "../../bench/fleet-worker.ts";
import { Fleet } from "../../src/coordinator/fleet.ts";

const startHub = (db: string): Promise<{ url: string; pid: number; stop(): Promise<void> }> =>
  new Promise((resolve) => {
    const prof = process.env.PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.PROF_DIR}`] : [];
    const c = spawn(
      process.execPath,
      [
        ...prof,
        new URL("../../src/cli/main.ts", import.meta.url).pathname,
        "serve",
        "--db",
        db,
        "--port",
        "0",
        "--token",
        TOKEN,
        "--enroll-token",
        ENROLL_TOKEN,
        "--enroll-rate",
        "1000000/1s",
        "--log-level",
        "warn",
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    c.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m)
        resolve({
          url: m[1]!,
          pid: c.pid!,
          stop: () =>
            new Promise((r) => {
              c.once("exit", () => r());
              c.kill("SIGTERM");
            }),
        });
    });
  });

const backend = (process.argv[2] ?? "sqlite") as "sqlite" | "postgres";
const ms = Number(process.argv[3] ?? 5000);
const inFlight = Number(process.argv[4] ?? 1);
const store = benchStore(backend, "prof");
const hub = await startHub(store.url);
const nodes = await startNodes(hub.url, inFlight > 1 ? 50 : 1, { workers: 1, prefix: "prof" });
const fleet = await Fleet.connect({ hub: hub.url, token: TOKEN });
const run = await fleet.createRun();
const cfgs = nodes.ids.map((id) => run.configuration([id]));
const t0 = performance.now();
let n = 0;
const lat: number[] = [];
await Promise.all(
  Array.from({ length: inFlight }, async (_, w) => {
    while (performance.now() - t0 < ms) {
      const s = performance.now();
      await cfgs[(n + w) % cfgs.length]!.call("echo", { x: 1 }, { quorum: "all", timeoutMs: 10_000 });
      lat.push(performance.now() - s);
      n++;
    }
  }),
);
lat.sort((a, b) => a - b);
console.log(
  `${backend} inFlight=${inFlight}: ${n} calls, ${((n * 1000) / ms).toFixed(0)}/s, p50 ${lat[lat.length >> 1]!.toFixed(3)} ms, hub pid ${hub.pid}`,
);
const m = await (
  await fetch(`${hub.url.replace(/^ws/, "http")}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
).text();
console.log(
  m
    .split("\n")
    .filter((l) => /_count\{|^fleetlink_store_calls/.test(l) && !/ 0$/.test(l))
    .join("\n"),
);
await fleet.close();
await nodes.stop();
await hub.stop();
await store.cleanup();
process.exit(0);
