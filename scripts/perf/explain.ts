// EXPLAIN ANALYZE of the one-statement push and reply on a schema with many nodes, runs and instructions.
import pg from "pg";
import { PostgresStore } from "../../src/store/postgres.ts";

const base = "postgres://root@127.0.0.1:5432/test";
const schema = `explain_${Date.now()}`;
const store = await PostgresStore.open(`${base}?schema=${schema}`);
const c = new pg.Client({ connectionString: base, options: `-c search_path=${schema}` });
await c.connect();
await c.query(`INSERT INTO nodes (id, name, status, heartbeat_interval_ms, created_at, session_id)
  SELECT gen_random_uuid()::text, 'n' || g, 'online', 5000, 0, 's' || g FROM generate_series(1, 10000) g`);
await c.query(`INSERT INTO runs (id, status, created_at, updated_at)
  SELECT gen_random_uuid()::text, 'running', 0, 0 FROM generate_series(1, 2000) g`);
const node = await store.registerNode({ name: "x", heartbeatIntervalMs: 60000 });
await store.openSession({ nodeId: node.id, sessionId: "s1" });
const run = await store.createRun();
for (let i = 0; i < 20; i++)
  await store.pushInstructions(
    run.id,
    Array.from({ length: 1000 }, () => ({ dst: node.id, method: "m", ttlMs: 600000 })),
  );
await c.query("ANALYZE");
let capture = false;
const plans: string[] = [];
const storeQuery = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  const text = typeof args[0] === "string" ? args[0] : (args[0] as { text?: string }).text;
  if (capture && text?.startsWith("WITH t AS")) {
    const values = typeof args[0] === "string" ? args[1] : (args[0] as { values?: unknown[] }).values;
    return (storeQuery as (...a: unknown[]) => Promise<unknown>)
      .call(this, `EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) ${text}`, values)
      .then((r) => {
        plans.push((r as pg.QueryResult).rows.map((x) => x["QUERY PLAN"]).join("\n"));
        return storeQuery.apply(this, args as never);
      });
  }
  return (storeQuery as (...a: unknown[]) => unknown).apply(this, args);
} as typeof storeQuery;
capture = true;
const ins = await store.pushInstructions(run.id, [
  { dst: node.id, method: "m", ttlMs: 600000, leaseTo: "s1" },
]);
await store
  .storeReplies([{ runId: run.id, nodeId: node.id, replyTo: ins[0]!.id }])
  .catch((e) => console.log(e));
capture = false;
for (const p of plans) console.log(`${p}\n----`);
await c.query(`DROP SCHEMA ${schema} CASCADE`);
await c.end();
await store.close();
