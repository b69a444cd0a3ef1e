// Sequential push + reply + claimReplies through the store of the checkout in cwd: mean ms per step.
const { PostgresStore } = await import(`${process.cwd()}/src/store/postgres.ts`);
const schema = `loop_${Date.now()}`;
const store = await PostgresStore.open(`postgres://root@127.0.0.1:5432/test?schema=${schema}`);
const node = await store.registerNode({ name: "x", heartbeatIntervalMs: 60000 });
await store.openSession({ nodeId: node.id, sessionId: "s1" });
const run = await store.createRun();
const n = Number(process.env.N ?? 1000);
const t = { push: 0, reply: 0, claim: 0 };
for (let i = 0; i < n + 100; i++) {
  const a = performance.now();
  const [ins] = await store.pushInstructions(run.id, [
    { dst: node.id, method: "m", ttlMs: 600000, leaseTo: "s1" },
  ]);
  const b = performance.now();
  await store.storeReplies([{ runId: run.id, nodeId: node.id, replyTo: ins.id }]);
  const c = performance.now();
  await store.claimReplies({ runId: run.id, limit: 10 });
  const d = performance.now();
  if (i >= 100) {
    t.push += b - a;
    t.reply += c - b;
    t.claim += d - c;
  }
}
console.log(process.cwd(), Object.fromEntries(Object.entries(t).map(([k, v]) => [k, +(v / n).toFixed(3)])));
const pg = (await import("pg")).default;
const c = new pg.Client({ connectionString: "postgres://root@127.0.0.1:5432/test" });
await c.connect();
await c.query(`DROP SCHEMA ${schema} CASCADE`);
await c.end();
await store.close();
