// Statements the hub sends to PostgreSQL per sequential call and per fan-out to 3, from count-queries.mjs.
// Run from the checkout to measure: PG_COUNT_DIR=$(mktemp -d) NODE_OPTIONS="--import ./scripts/perf/count-queries.mjs" npx node scripts/perf/pg-roundtrips.ts
import { readdirSync, readFileSync } from "node:fs";

const root = process.cwd();
const { fleetlinkSystem } = await import(`${root}/bench/peers-fleetlink.ts`);
const dir = process.env.PG_COUNT_DIR!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const snapshot = (): Record<string, number> => {
  const all: Record<string, number> = {};
  for (const f of readdirSync(dir))
    for (const [k, v] of Object.entries(
      JSON.parse(readFileSync(`${dir}/${f}`, "utf8")) as Record<string, number>,
    ))
      all[k] = (all[k] ?? 0) + v;
  return all;
};
const measure = async (label: string, n: number, fn: (i: number) => Promise<void>) => {
  for (let i = 0; i < 30; i++) await fn(i);
  await sleep(1000);
  const before = snapshot();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  const ms = (performance.now() - t0) / n;
  await sleep(1000);
  const after = snapshot();
  const rows = Object.entries(after)
    .map(([k, v]) => [k, (v - (before[k] ?? 0)) / n] as const)
    .filter(([, v]) => v > 0.01)
    .sort((a, b) => b[1] - a[1]);
  const total = rows.reduce((s, [, v]) => s + v, 0);
  console.log(`\n${label}: ${total.toFixed(2)} statements per call (mean ${ms.toFixed(2)} ms per call)`);
  for (const [k, v] of rows) console.log(`  ${v.toFixed(2)}  ${k}`);
};
const sys = await fleetlinkSystem("postgres");
await sys.setWorkers(3);
await measure("sequential, 1 node", 300, (i: number) => sys.call(i * 3));
await measure("fan-out to 3", 200, () => sys.fanout());
await sys.close();
process.exit(0);
