// Profiling aid (not a benchmark): calls against one `fleetlink serve` for DURATION ms, IN_FLIGHT at a time;
// PROF_DIR=/tmp/prof writes the hub's CPU profile there (it is stopped gracefully, so the profile is written).

import { benchStore, startHub, startNodes, TOKEN } from "../../bench/fleet-worker.ts";
import { Fleet } from "../../src/coordinator/fleet.ts";

const backend = (process.argv[2] ?? "sqlite") as "sqlite" | "postgres";
const ms = Number(process.argv[3] ?? 5000);
const inFlight = Number(process.argv[4] ?? 1);
const store = benchStore(backend, "prof");
const hub = await startHub(store.url, {
  nodeArgs: process.env.PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.PROF_DIR}`] : [],
});
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
