// Gossip Glomers 3a–3e with fleetlink's broadcast node under fleetlink's Maelstrom-compatible harness.
// Run: npm run bench:broadcast   (≈ 3 minutes; every run also writes a report under runs/bench-broadcast/)
import { join } from "node:path";
import { runTest, type TestParams } from "../src/maelstrom/harness/run.ts";

const root = join(import.meta.dirname, "..");
const bin = `"${process.execPath}" "${join(root, "src/maelstrom/main.ts")}" broadcast`;
const seed = Number(process.env.SEED ?? 1);

const configs: { name: string; p: Partial<TestParams>; target: string; best: string }[] = [
  { name: "3a", p: { nodeCount: 1, rate: 10, latencyMs: 0 }, target: "valid", best: "-" },
  { name: "3b", p: { nodeCount: 5, rate: 10, latencyMs: 0 }, target: "valid", best: "-" },
  {
    name: "3c",
    p: { nodeCount: 5, rate: 10, latencyMs: 0, nemesis: "partition" },
    target: "valid, nothing lost",
    best: "-",
  },
  {
    name: "3d/3e",
    p: { nodeCount: 25, rate: 100, latencyMs: 100 },
    target: "3d: <30 msgs/op, p50 <400, max <600; 3e: <20, <1000, <2000; ours aimed ≤1.5, ≤350, ≤700",
    best: "≈1.9–2.0 msgs/op, p50 340–760, max 680–1090",
  },
  {
    name: "3e + partitions",
    p: { nodeCount: 25, rate: 100, latencyMs: 100, nemesis: "partition" },
    target: "valid, nothing lost",
    best: "-",
  },
];

console.log(
  `bench:broadcast — seed ${seed}, time limit 20 s, recovery 10 s, client timeout 5 s; node: ${bin}`,
);
const rows = [];
for (const c of configs) {
  const p: TestParams = {
    workload: "broadcast",
    bin,
    nodeCount: 5,
    timeLimitS: 20,
    rate: 10,
    latencyMs: 0,
    nemesis: "none",
    nemesisIntervalS: 5,
    topology: "grid",
    seed,
    recoveryS: 10,
    clientTimeoutMs: 5000,
    out: join(root, "runs", "bench-broadcast", c.name.replace(/[^a-z0-9]+/gi, "-")),
    ...c.p,
  };
  const r = await runTest(p);
  const row = {
    config: c.name,
    nodes: p.nodeCount,
    rate: p.rate,
    latencyMs: p.latencyMs,
    nemesis: p.nemesis,
    valid: r.valid,
    ops: r.ops.total,
    lost: r.lost?.length ?? 0,
    msgsPerOp: Number(r.msgsPerOp.toFixed(2)),
    p50: r.stableLatencyMs?.p50 ?? 0,
    max: r.stableLatencyMs?.max ?? 0,
    target: c.target,
    bestPublished: c.best,
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}
console.log(
  "\n| config | nodes | rate | latency | nemesis | valid | lost | msgs/op | stable p50 (ms) | stable max (ms) | target | best published |",
);
console.log("| --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | --- |");
for (const r of rows)
  console.log(
    `| ${r.config} | ${r.nodes} | ${r.rate} | ${r.latencyMs} | ${r.nemesis} | ${r.valid} | ${r.lost} | ${r.msgsPerOp} | ${r.p50} | ${r.max} | ${r.target} | ${r.bestPublished} |`,
  );
