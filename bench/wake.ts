// How fast a hub replica notices another replica's commit: SQLite PRAGMA data_version polling at several
// intervals (and what the polling costs an idle process), against PostgreSQL LISTEN/NOTIFY.
// Run: npm run bench:wake
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { PostgresStore } from "../src/store/postgres.ts";
import { SqliteStore } from "../src/store/sqlite.ts";
import type { Store } from "../src/store/store.ts";

const SAMPLES = 200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

const measure = async (writer: Store, watcher: Store) => {
  const run = await writer.createRun();
  const n = await writer.registerNode({ name: "w", heartbeatIntervalMs: 60_000 });
  await writer.heartbeat(n.id);
  let resolve: (() => void) | null = null;
  const stop = watcher.watch(() => resolve?.());
  await sleep(200);
  const lat: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const woke = new Promise<void>((r) => {
      resolve = r;
    });
    const t = performance.now();
    await writer.pushInstructions(run.id, [{ dst: n.id, method: "m", ttlMs: 60_000 }]);
    await woke;
    lat.push(performance.now() - t);
    resolve = null;
    await sleep(Math.random() * 10);
  }
  stop();
  return lat;
};

const idleCpu = async (watcher: Store) => {
  const stop = watcher.watch(() => {});
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(3000);
  const c = process.cpuUsage(c0);
  stop();
  return ((c.user + c.system) / 1000 / (performance.now() - t0)) * 100;
};

const rows: Record<string, unknown>[] = [];
// The stores' watch timers do not keep a process alive (a hub's server does); this benchmark has no server.
const keepAlive = setInterval(() => {}, 1000);
console.log(
  `bench:wake — samples per config: ${SAMPLES}; latency = push commit on one connection → watch() callback on another`,
);
const dir = mkdtempSync(join(tmpdir(), "fleetlink-wake-"));
try {
  for (const interval of [1, 5, 20]) {
    const path = join(dir, `w${interval}.db`);
    const writer = new SqliteStore(path);
    const watcher = new SqliteStore(path, { watchIntervalMs: interval });
    const lat = await measure(writer, watcher);
    const cpu = await idleCpu(watcher);
    rows.push({
      backend: "sqlite",
      mechanism: `data_version poll ${interval} ms`,
      p50Ms: pct(lat, 0.5),
      p99Ms: pct(lat, 0.99),
      idleCpuPct: cpu,
    });
    await writer.close();
    await watcher.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const pgUrl =
  process.env.FLEETLINK_BENCH_POSTGRES_URL ??
  process.env.FLEETLINK_TEST_POSTGRES_URL ??
  "postgres://root@127.0.0.1:5432/test";
const schema = `bench_wake_${Math.random().toString(36).slice(2, 8)}`;
try {
  const u = new URL(pgUrl);
  u.searchParams.set("schema", schema);
  const writer = await PostgresStore.open(u.toString());
  const watcher = await PostgresStore.open(u.toString());
  const lat = await measure(writer, watcher);
  const cpu = await idleCpu(watcher);
  rows.push({
    backend: "postgres",
    mechanism: "LISTEN/NOTIFY",
    p50Ms: pct(lat, 0.5),
    p99Ms: pct(lat, 0.99),
    idleCpuPct: cpu,
  });
  await writer.close();
  await watcher.close();
  const c = new pg.Client({ connectionString: pgUrl });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await c.end();
} catch (e) {
  console.log(`postgres skipped: ${(e as Error).message}`);
}
console.log("\n| backend | mechanism | wake p50 (ms) | wake p99 (ms) | idle CPU while watching |");
console.log("| --- | --- | ---: | ---: | ---: |");
for (const r of rows)
  console.log(
    `| ${r.backend} | ${r.mechanism} | ${(r.p50Ms as number).toFixed(2)} | ${(r.p99Ms as number).toFixed(2)} | ${(r.idleCpuPct as number).toFixed(2)} % |`,
  );
for (const r of rows) console.log(JSON.stringify(r));
clearInterval(keepAlive);
