// bench:push-index: what the dashboard's node-history index (migration 12, `instructions_dst` on (dst, seq))
// costs a push. One store per backend; pushes of BATCH instructions to 50 nodes, in slices that alternate with the
// index and without it (dropped and created again between slices, on the same database and connection), so load
// from anything else on the machine falls on both alike. Prints its parameters, a table, then JSON.
//
// Environment: FLEETLINK_BENCH_POSTGRES_URL (or FLEETLINK_TEST_POSTGRES_URL; default
// postgres://root@127.0.0.1:5432/test), BENCH_PUSH_INDEX_SLICES (per arm, default 6), BENCH_PUSH_INDEX_SLICE_MS
// (default 1500).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { openStore } from "../src/store/open.ts";
import type { Store } from "../src/store/store.ts";

const PG_URL =
  process.env.FLEETLINK_BENCH_POSTGRES_URL ??
  process.env.FLEETLINK_TEST_POSTGRES_URL ??
  "postgres://root@127.0.0.1:5432/test";
const SLICES = Number(process.env.BENCH_PUSH_INDEX_SLICES ?? 6);
const SLICE_MS = Number(process.env.BENCH_PUSH_INDEX_SLICE_MS ?? 1500);
const NODES = 50;
const BATCHES = [1, 32] as const;
const CREATE = "CREATE INDEX instructions_dst ON instructions (dst, seq)";
const DROP = "DROP INDEX instructions_dst";

type Exec = (sql: string) => Promise<void>;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

/** Instructions pushed per second in one slice; ended ones are cleaned up after it, outside the clock. */
const slice = async (store: Store, runId: string, nodes: string[], batch: number): Promise<number> => {
  let n = 0;
  const t0 = performance.now();
  const until = t0 + SLICE_MS;
  while (performance.now() < until) {
    const items = Array.from({ length: batch }, (_, i) => ({
      dst: nodes[(n + i) % nodes.length]!,
      method: "m",
      payload: new Uint8Array(64),
      ttlMs: 60_000,
    }));
    await store.pushInstructions(runId, items);
    n += batch;
  }
  return (n * 1000) / (performance.now() - t0);
};

const measure = async (backend: string, store: Store, exec: Exec) => {
  const run = await store.createRun();
  const nodes: string[] = [];
  for (let i = 0; i < NODES; i++) {
    const n = await store.registerNode({ name: `n${i}`, heartbeatIntervalMs: 600_000 });
    nodes.push((await store.heartbeat(n.id)).id);
  }
  const rows = [];
  for (const batch of BATCHES) {
    await slice(store, run.id, nodes, batch); // warm-up
    const arms: Record<"with" | "without", number[]> = { with: [], without: [] };
    for (let s = 0; s < SLICES; s++)
      for (const arm of s % 2 === 0 ? (["with", "without"] as const) : (["without", "with"] as const)) {
        if (arm === "without") await exec(DROP);
        arms[arm].push(await slice(store, run.id, nodes, batch));
        if (arm === "without") await exec(CREATE);
      }
    const w = median(arms.with);
    const wo = median(arms.without);
    rows.push({ backend, batch, withIndex: Math.round(w), withoutIndex: Math.round(wo), ratio: w / wo });
  }
  return rows;
};

const main = async () => {
  console.log("bench:push-index");
  console.log(
    `  ${NODES} nodes, pushes of ${BATCHES.join(" and ")} instructions (64 B payload), ${SLICES} slices of ${SLICE_MS} ms per arm, arms alternated (ABBA); median instructions/s`,
  );
  const rows = [];
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-bench-index-"));
  const file = join(dir, "hub.db");
  const sqlite = await openStore(`sqlite:${file}`);
  const { DatabaseSync } = await import("node:sqlite");
  const raw = new DatabaseSync(file);
  raw.exec("PRAGMA busy_timeout = 5000");
  try {
    rows.push(...(await measure("sqlite", sqlite, async (sql) => void raw.exec(sql))));
  } finally {
    raw.close();
    await sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const schema = `bench_push_index_${process.pid}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  const u = new URL(PG_URL);
  u.searchParams.set("schema", schema);
  const store = await openStore(u.toString());
  try {
    rows.push(
      ...(await measure("postgres", store, async (sql) => {
        await admin.query(`SET search_path = "${schema}"`);
        await admin.query(sql);
      })),
    );
  } finally {
    await store.close();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  }
  console.log("| backend | instructions per push | with index /s | without /s | with ÷ without |");
  console.log("|---|---|---|---|---|");
  for (const r of rows)
    console.log(`| ${r.backend} | ${r.batch} | ${r.withIndex} | ${r.withoutIndex} | ${r.ratio.toFixed(3)} |`);
  for (const r of rows) console.log(JSON.stringify(r));
};

await main();
