// bench:claim: instructions claimed per second through the store, against a raw single-statement claim loop on
// the same database with the same driver, for SQLite and PostgreSQL × {1, 4} replica processes × {1, 32} rows per
// statement. Replicas are real OS processes (this script forked in worker mode). Each replica opens both the store
// and the raw connection and all replicas switch between them on the same clock, in short slices ordered
// store, raw, raw, store, ..., so load from anything else on the machine falls on both alike. Prints its
// parameters, a table, then one JSON object per configuration.
//
// Environment: FLEETLINK_BENCH_POSTGRES_URL (or FLEETLINK_TEST_POSTGRES_URL; default
// postgres://root@127.0.0.1:5432/test), BENCH_CLAIM_DURATION_MS (default 3000), BENCH_CLAIM_NODES (default 4096).
import { type ChildProcess, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import pg from "pg";
import { openStore } from "../src/store/open.ts";
import type { Store } from "../src/store/store.ts";

type Backend = "sqlite" | "postgres";
type Kind = "store" | "raw";

const PG_URL =
  process.env.FLEETLINK_BENCH_POSTGRES_URL ??
  process.env.FLEETLINK_TEST_POSTGRES_URL ??
  "postgres://root@127.0.0.1:5432/test";
/** Counted time per loop (store, raw) and configuration, in slices of SLICE_MS. */
const DURATION_MS = Number(process.env.BENCH_CLAIM_DURATION_MS ?? 3000);
const SLICE_MS = 500;
const SLICES = 2 * Math.max(1, Math.round(DURATION_MS / SLICE_MS / 2));
/** One uncounted slice per loop first. */
const WARMUP_SLICES = 2;
const ORDER = ["store", "raw", "raw", "store"] as const;
// Claimed rows stay leased (the benchmark stores no replies), and every claim's index scan steps over its node's
// leased rows before reaching a pending one. Many nodes keep that depth small, as it is when nodes answer.
const NODES = Number(process.env.BENCH_CLAIM_NODES ?? 4096);
const LEASE_MS = 600_000;
const REPLICAS = [1, 4] as const;
const BATCHES = [1, 32] as const;
const BUSY_TIMEOUT_MS = 10_000;
const HARD_LIMIT_MS = 240_000;
// Rows seeded per run: enough for this rate over warm-up + duration (a run that drains anyway is flagged).
const MAX_RATE: Record<Backend, Record<number, number>> = {
  sqlite: { 1: 60_000, 32: 300_000 },
  postgres: { 1: 15_000, 32: 120_000 },
};

// The baseline: the smallest equivalent queue table, and the same claim statement shape as the store's.
const RAW_TABLE = {
  sqlite: `CREATE TABLE bench_claim (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
      dst TEXT NOT NULL, state TEXT NOT NULL, lease_until INTEGER);
    CREATE INDEX bench_claim_dst ON bench_claim (dst, seq) WHERE state <> 'done';`,
  postgres: `CREATE TABLE bench_claim (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE,
      dst TEXT NOT NULL, state TEXT NOT NULL, lease_until BIGINT) WITH (autovacuum_enabled = false);
    CREATE INDEX bench_claim_dst ON bench_claim (dst, seq) WHERE state <> 'done';`,
};
const RAW_CLAIM = {
  sqlite: `UPDATE bench_claim SET state = 'leased', lease_until = ?1
    WHERE seq IN (SELECT seq FROM bench_claim WHERE dst = ?3 AND state <> 'done'
      AND (state = 'pending' OR lease_until <= ?2) ORDER BY seq LIMIT ?4)
    RETURNING *`,
  postgres: `WITH picked AS MATERIALIZED (
      SELECT seq FROM bench_claim WHERE dst = $3 AND state <> 'done'
        AND (state = 'pending' OR lease_until <= $2) ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED)
    UPDATE bench_claim b SET state = 'leased', lease_until = $1 FROM picked WHERE b.seq = picked.seq
    RETURNING b.*`,
};

// Seeding clones one instruction per node that the store itself pushed (bench_template), `per` times, interleaved
// across nodes as round-robin pushes would be; ids are ordered like the store's UUIDv7 ids.
const SEED_COLS =
  "id, run_id, src, dst, group_id, method, payload, created_at, ttl_ms, expires_at, state, attempts, max_attempts, lease_until, hold_offline";
const SEED_VALS =
  "t.run_id, t.src, t.dst, t.group_id, t.method, t.payload, t.created_at, t.ttl_ms, t.expires_at, 'pending', 0, t.max_attempts, NULL, t.hold_offline";
const SEED = {
  sqlite: {
    template: `CREATE TABLE bench_template AS SELECT row_number() OVER (ORDER BY seq) - 1 AS rn, * FROM instructions;
      DELETE FROM instructions;`,
    clear: "DELETE FROM instructions; DELETE FROM bench_claim;",
    after: "PRAGMA wal_checkpoint(TRUNCATE)",
    store: `WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < ?1)
      INSERT INTO instructions (${SEED_COLS})
      SELECT printf('00000000-0000-7000-8000-%012x', g.i * ?2 + t.rn), ${SEED_VALS}
      FROM g CROSS JOIN bench_template t ORDER BY g.i, t.rn`,
    raw: `WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < ?1)
      INSERT INTO bench_claim (id, dst, state, lease_until)
      SELECT printf('00000000-0000-7000-8000-%012x', g.i * ?2 + t.rn), t.dst, 'pending', NULL
      FROM g CROSS JOIN bench_template t ORDER BY g.i, t.rn`,
  },
  postgres: {
    // Autovacuum off on the two claimed tables, so it cannot start in the middle of one measurement; each
    // configuration starts from VACUUM (ANALYZE) and a CHECKPOINT instead.
    template: `CREATE TABLE bench_template AS SELECT row_number() OVER (ORDER BY seq) - 1 AS rn, * FROM instructions;
      DELETE FROM instructions;
      ALTER TABLE instructions SET (autovacuum_enabled = false);`,
    clear: "TRUNCATE instructions, bench_claim",
    after: "VACUUM (ANALYZE) instructions, bench_claim",
    store: `INSERT INTO instructions (${SEED_COLS})
      SELECT '00000000-0000-7000-8000-' || lpad(to_hex(g * $2 + t.rn), 12, '0'), ${SEED_VALS}
      FROM generate_series(0, $1 - 1) g CROSS JOIN bench_template t ORDER BY g, t.rn`,
    raw: `INSERT INTO bench_claim (id, dst, state, lease_until)
      SELECT '00000000-0000-7000-8000-' || lpad(to_hex(g * $2 + t.rn), 12, '0'), t.dst, 'pending', NULL
      FROM generate_series(0, $1 - 1) g CROSS JOIN bench_template t ORDER BY g, t.rn`,
  },
};

interface Spec {
  backend: Backend;
  /** Store URL (sqlite:PATH or postgres://…?schema=NAME); the raw loop opens the same database. */
  url: string;
  nodeIds: string[];
  offset: number;
  batch: number;
}
/** Per loop: rows claimed in counted slices, rows claimed in all, and whether it ran out of rows. */
type Result = Record<Kind, { counted: number; total: number; drained: boolean }>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A PostgreSQL URL without its schema parameter, and the schema. */
const splitSchema = (url: string): { url: string; schema: string } => {
  const u = new URL(url);
  const schema = u.searchParams.get("schema") ?? "public";
  u.searchParams.delete("schema");
  return { url: u.toString(), schema };
};

const sqliteConn = (path: string): DatabaseSync => {
  const db = new DatabaseSync(path);
  db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = NORMAL");
  return db;
};

// ---- worker: one replica process ----

interface Claimer {
  /** Claims up to `batch` rows of one node; returns how many it got. */
  claim: (node: string) => number | Promise<number>;
  close: () => Promise<void>;
}

const openClaimer = async (s: Spec, kind: Kind): Promise<Claimer> => {
  if (kind === "store") {
    const store: Store = await openStore(s.url, { busyTimeoutMs: BUSY_TIMEOUT_MS, poolSize: 2 });
    return {
      claim: async (node) =>
        (await store.claimInstructions({ nodeIds: [node], limit: s.batch, leaseMs: LEASE_MS })).length,
      close: () => store.close(),
    };
  }
  if (s.backend === "sqlite") {
    const db = sqliteConn(s.url.slice("sqlite:".length));
    const st = db.prepare(RAW_CLAIM.sqlite);
    return {
      claim: (node) => {
        const now = Date.now();
        return st.all(now + LEASE_MS, now, node, s.batch as SQLInputValue).length;
      },
      close: async () => db.close(),
    };
  }
  const { url, schema } = splitSchema(s.url);
  const client = new pg.Client({ connectionString: url, options: `-c search_path=${schema}` });
  await client.connect();
  return {
    claim: async (node) => {
      const now = Date.now();
      return (await client.query(RAW_CLAIM.postgres, [now + LEASE_MS, now, node, s.batch])).rows.length;
    },
    close: () => client.end(),
  };
};

const runWorker = async () => {
  const send = (m: unknown) => new Promise<void>((res) => process.send!(m, () => res()));
  // One listener from the start: a message arriving between two awaits is queued, not lost.
  const inbox: unknown[] = [];
  let waiter: ((m: unknown) => void) | undefined;
  process.on("message", (m) => {
    if (waiter) waiter(m);
    else inbox.push(m);
    waiter = undefined;
  });
  const next = <T>() =>
    inbox.length > 0
      ? Promise.resolve(inbox.shift() as T)
      : new Promise<T>((res) => {
          waiter = res as (m: unknown) => void;
        });
  try {
    const spec = await next<Spec>();
    const claimers = { store: await openClaimer(spec, "store"), raw: await openClaimer(spec, "raw") };
    await send({ ready: true });
    const { startAt } = await next<{ startAt: number }>();
    const nodes = spec.nodeIds;
    const result: Result = {
      store: { counted: 0, total: 0, drained: false },
      raw: { counted: 0, total: 0, drained: false },
    };
    const cursor = { store: spec.offset, raw: spec.offset };
    const empty = { store: 0, raw: 0 };
    for (let k = 0; k < WARMUP_SLICES + 2 * SLICES; k++) {
      const kind = ORDER[k % ORDER.length]!;
      const r = result[kind];
      const from = startAt + k * SLICE_MS;
      const until = from + SLICE_MS;
      if (from > Date.now()) await sleep(from - Date.now());
      // Cycles over every node from this replica's offset, one node per claim.
      for (let now = Date.now(); now < until && !r.drained; now = Date.now()) {
        const n = await claimers[kind].claim(nodes[cursor[kind]++ % nodes.length]!);
        r.total += n;
        if (k >= WARMUP_SLICES) r.counted += n;
        empty[kind] = n > 0 ? 0 : empty[kind] + 1;
        if (empty[kind] >= nodes.length) r.drained = true;
      }
    }
    await send({ result });
    await claimers.store.close();
    await claimers.raw.close();
    process.exit(0);
  } catch (e) {
    await send({ error: String((e as Error).stack ?? e) });
    process.exit(1);
  }
};

// ---- parent ----

const children = new Set<ChildProcess>();

const nextMessage = (child: ChildProcess, timeoutMs: number) =>
  new Promise<Record<string, unknown>>((res, rej) => {
    const timer = setTimeout(() => rej(new Error("replica timed out")), timeoutMs);
    const onExit = (code: number | null, sig: string | null) => {
      clearTimeout(timer);
      rej(new Error(`replica exited ${code ?? sig}`));
    };
    child.once("exit", onExit);
    child.once("message", (m: Record<string, unknown>) => {
      clearTimeout(timer);
      child.off("exit", onExit);
      if (m.error) rej(new Error(`replica: ${m.error}`));
      else res(m);
    });
  });

/** Rows per second of each loop, summed over `replicas` processes that all count over the same slices. */
const measure = async (base: Omit<Spec, "offset">, replicas: number) => {
  const kids = Array.from({ length: replicas }, () => {
    const c = fork(import.meta.filename, ["worker"], {
      execArgv: [],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    children.add(c);
    c.once("exit", () => children.delete(c));
    return c;
  });
  const exited = kids.map((c) => new Promise((r) => c.once("exit", r)));
  try {
    await Promise.all(
      kids.map((c, w) => {
        const ready = nextMessage(c, 30_000);
        c.send({ ...base, offset: Math.floor((w * base.nodeIds.length) / replicas) });
        return ready;
      }),
    );
    const done = kids.map((c) => nextMessage(c, (WARMUP_SLICES + 2 * SLICES) * SLICE_MS + 30_000));
    const startAt = Date.now() + 100;
    for (const c of kids) c.send({ startAt });
    const results = (await Promise.all(done)).map((m) => m.result as Result);
    await Promise.all(exited);
    const sum = (kind: Kind) => ({
      perSec: results.reduce((s, r) => s + r[kind].counted, 0) / ((SLICES * SLICE_MS) / 1000),
      claimed: results.reduce((s, r) => s + r[kind].total, 0),
      drained: results.some((r) => r[kind].drained),
    });
    return { store: sum("store"), raw: sum("raw") };
  } finally {
    for (const c of kids) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  }
};

/** Registers the nodes (online, long heartbeat interval) and pushes one instruction per node as the template. */
const prepareStore = async (url: string, concurrency: number): Promise<string[]> => {
  const store = await openStore(url);
  try {
    const nodeIds: string[] = new Array(NODES);
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let i = next++; i < NODES; i = next++) {
          const n = await store.registerNode({ name: `bench-node-${i}`, heartbeatIntervalMs: 3_600_000 });
          await store.heartbeat(n.id);
          nodeIds[i] = n.id;
        }
      }),
    );
    const run = await store.createRun();
    for (let off = 0; off < NODES; off += 1000)
      await store.pushInstructions(
        run.id,
        nodeIds.slice(off, off + 1000).map((dst) => ({ dst, method: "work", ttlMs: 3_600_000 })),
      );
    return nodeIds;
  } finally {
    await store.close();
  }
};

interface Db {
  exec(sql: string, params?: unknown[]): Promise<void>;
  /** Leaves exactly `per` pending rows per node in both tables. */
  seed(per: number): Promise<void>;
}

const sqliteDb = (path: string): Db & { close(): void } => {
  const db = sqliteConn(path);
  return {
    exec: async (sql) => db.exec(sql),
    seed: async (per) => {
      db.exec(SEED.sqlite.clear);
      db.prepare(SEED.sqlite.store).run(per, NODES);
      db.prepare(SEED.sqlite.raw).run(per, NODES);
      db.exec(SEED.sqlite.after);
    },
    close: () => db.close(),
  };
};

const postgresDb = async (url: string): Promise<Db & { close(): Promise<void> }> => {
  const { url: base, schema } = splitSchema(url);
  const c = new pg.Client({ connectionString: base, options: `-c search_path=${schema}` });
  await c.connect();
  return {
    exec: async (sql, params) => void (await c.query(sql, params)),
    seed: async (per) => {
      await c.query(SEED.postgres.clear);
      await c.query(SEED.postgres.store, [per, NODES]);
      await c.query(SEED.postgres.raw, [per, NODES]);
      // Fresh statistics and hint bits for both tables alike, and no seeding WAL left for a checkpoint to flush
      // in the middle of the measurement.
      await c.query(SEED.postgres.after);
      await c.query("CHECKPOINT").catch(() => {});
    },
    close: () => c.end(),
  };
};

interface Row {
  backend: Backend;
  replicas: number;
  batch: number;
  claimsPerSec: number;
  baselinePerSec: number;
  ratio: number;
}

const runBackend = async (backend: Backend, url: string, db: Db, nodeIds: string[], rows: Row[]) => {
  for (const replicas of REPLICAS)
    for (const batch of BATCHES) {
      const perLoopMs = (WARMUP_SLICES / 2 + SLICES) * SLICE_MS;
      const per = Math.ceil((MAX_RATE[backend][batch]! * perLoopMs) / 1000 / NODES);
      await db.seed(per);
      const m = await measure({ backend, url, nodeIds, batch }, replicas);
      const note = (kind: Kind) =>
        `${kind} ${Math.round(m[kind].perSec)}/s (${(m[kind].claimed / NODES).toFixed(0)} of ${per} rows/node` +
        `${m[kind].drained ? ", DRAINED: raise MAX_RATE" : ""})`;
      console.error(`  ${backend} replicas=${replicas} batch=${batch}: ${note("store")}, ${note("raw")}`);
      rows.push({
        backend,
        replicas,
        batch,
        claimsPerSec: Math.round(m.store.perSec),
        baselinePerSec: Math.round(m.raw.perSec),
        ratio: Number((m.store.perSec / m.raw.perSec).toFixed(2)),
      });
    }
};

const runSqlite = async (rows: Row[]) => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-bench-claim-"));
  try {
    const path = join(dir, "claim.db");
    const url = `sqlite:${path}`;
    const nodeIds = await prepareStore(url, 1);
    const db = sqliteDb(path);
    try {
      await db.exec(SEED.sqlite.template + RAW_TABLE.sqlite);
      await runBackend("sqlite", url, db, nodeIds, rows);
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

const runPostgres = async (rows: Row[]) => {
  const admin = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  try {
    await admin.connect();
  } catch (e) {
    console.log(
      `postgres: unreachable at ${redact(PG_URL)} (${(e as Error).message}); skipping postgres rows`,
    );
    return;
  }
  const schema = `bench_claim_${randomBytes(6).toString("hex")}`;
  const u = new URL(PG_URL);
  u.searchParams.set("schema", schema);
  const url = u.toString();
  try {
    const nodeIds = await prepareStore(url, 8);
    const db = await postgresDb(url);
    try {
      await db.exec(SEED.postgres.template + RAW_TABLE.postgres);
      await runBackend("postgres", url, db, nodeIds, rows);
    } finally {
      await db.close();
    }
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  }
};

const redact = (url: string) => url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");

const printTable = (rows: Row[]) => {
  const head = ["backend", "replicas", "batch", "claims/s", "baseline/s", "ratio"];
  const cells = rows.map((r) => [
    r.backend,
    String(r.replicas),
    String(r.batch),
    r.claimsPerSec.toLocaleString("en-US"),
    r.baselinePerSec.toLocaleString("en-US"),
    r.ratio.toFixed(2),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    `| ${c.map((x, i) => (i < 3 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join(" | ")} |`;
  console.log(line(head));
  console.log(`|${w.map((n, i) => (i < 3 ? `${"-".repeat(n + 1)}-` : `${"-".repeat(n + 1)}:`)).join("|")}|`);
  for (const c of cells) console.log(line(c));
};

const main = async () => {
  const watchdog = setTimeout(() => {
    console.error(`bench:claim: still running after ${HARD_LIMIT_MS} ms, giving up`);
    for (const c of children) c.kill("SIGKILL");
    process.exit(1);
  }, HARD_LIMIT_MS);
  watchdog.unref();
  console.log("bench:claim: instructions claimed per second, store vs raw single-statement claim loop");
  console.log(
    `node ${process.version}; per configuration ${(SLICES * SLICE_MS) / 1000} s counted per loop, in ${SLICE_MS} ms ` +
      `slices alternating store/raw after ${WARMUP_SLICES} warm-up slices; ${NODES} nodes, ` +
      `one node per claim, cycling; lease ${LEASE_MS} ms; empty payloads; replicas ${REPLICAS.join(", ")} ` +
      `(OS processes); batch ${BATCHES.join(", ")} rows per claim`,
  );
  console.log(
    `sqlite: temp file, WAL, synchronous NORMAL, busy_timeout ${BUSY_TIMEOUT_MS}; postgres: ${redact(PG_URL)}, ` +
      "fresh schema bench_claim_<random>, autovacuum off on the claimed tables, VACUUM (ANALYZE) + CHECKPOINT " +
      "before each run",
  );
  // Absolute rates drift with whatever else the machine runs; the ratio is measured side by side.
  console.log(`${availableParallelism()} cores, load average ${loadavg()[0]!.toFixed(2)} at start`);
  const rows: Row[] = [];
  await runSqlite(rows);
  await runPostgres(rows);
  console.log("");
  printTable(rows);
  console.log("");
  for (const r of rows) console.log(JSON.stringify(r));
};

if (process.argv[2] === "worker") await runWorker();
else
  await main().catch((e) => {
    for (const c of children) c.kill("SIGKILL");
    console.error(e);
    process.exit(1);
  });
