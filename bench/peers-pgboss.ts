// bench:peers contestant on pg-boss (PostgreSQL), both sides. pg-boss has no reply channel, so a reply is a job
// on a reply queue: the coordinator sends a job to the request queue; the workers (one pg-boss instance in
// the worker process, work() with localConcurrency = the worker count, batchSize 1) send the reply job from
// the handler, and pg-boss completes the request when the handler returns, so the reply is stored before the
// request is done; the coordinator's work() on the reply queue (batchSize 64) matches replies to requests.
// Both queues have `notify` on and both instances `useListenNotify`, the documented way to wake workers at
// once instead of after the polling interval (≥ 500 ms); polling stays on as pg-boss's own backstop.
import pg from "pg";
import { PgBoss } from "pg-boss";
import { dropSchema, PG_URL, redact } from "./fleet-worker.ts";
import {
  PAYLOAD,
  peerSystem,
  pkgVersion,
  type System,
  serverPids,
  startPeerWorker,
  Waiting,
  type WorkerSide,
} from "./peers-common.ts";

interface Spec {
  schema: string;
  req: string;
  rep: string;
}

const openBoss = async (schema: string, max: number): Promise<PgBoss> => {
  const boss = new PgBoss({
    connectionString: PG_URL,
    schema,
    max,
    useListenNotify: true,
    // Only the queue operations: no maintenance or cron in the measured windows.
    supervise: false,
    schedule: false,
  });
  boss.on("error", (e) => console.error(`pg-boss: ${String((e as Error).message ?? e)}`));
  await boss.start();
  return boss;
};

/** PostgreSQL's version and commit durability, asked of the server. */
export const pgSettings = async (): Promise<{ version: string; durability: string }> => {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  try {
    await c.connect();
  } catch (e) {
    throw new Error(`PostgreSQL unreachable at ${redact(PG_URL)} (${(e as Error).message})`);
  }
  try {
    const show = async (k: string) => (await c.query<Record<string, string>>(`SHOW ${k}`)).rows[0]![k]!;
    return {
      version: await show("server_version"),
      durability: `synchronous_commit=${await show("synchronous_commit")}, fsync=${await show("fsync")}, wal_sync_method=${await show("wal_sync_method")}`,
    };
  } finally {
    await c.end();
  }
};

/** The postmaster and its backends: where a PostgreSQL-backed system spends server CPU. */
export const postgresPids = (): number[] => serverPids("postgres", "PostgreSQL");

// ---- worker side ----

/** Pool per worker instance: one connection per concurrent fetch up to 20, plus two for sends. */
const poolFor = (k: number) => Math.min(k, 20) + 2;

export const pgBossWorkers = async (spec: Spec): Promise<WorkerSide> => {
  let boss: PgBoss | undefined;
  const stop = async () => {
    await boss?.stop({ graceful: false, close: true });
    boss = undefined;
  };
  return {
    async setWorkers(k) {
      await stop();
      const b = await openBoss(spec.schema, poolFor(k));
      boss = b;
      await b.work<{ id: string }>(spec.req, { localConcurrency: k, batchSize: 1 }, async (jobs) => {
        for (const j of jobs) await b.send(spec.rep, j.data);
      });
    },
    close: stop,
  };
};

// ---- coordinator side ----

export const pgBossSystem = async (): Promise<System> => {
  const settings = await pgSettings();
  postgresPids();
  const spec: Spec = {
    schema: `bench_peers_pgboss_${Math.random().toString(36).slice(2, 10)}`,
    req: "req",
    rep: "rep",
  };
  let boss: PgBoss | undefined;
  try {
    // Queues are created by an instance of their own: one that starts afterwards has them in its queue cache,
    // which is where work() learns that a queue has notify on.
    const setup = await openBoss(spec.schema, 2);
    await setup.createQueue(spec.req, { notify: true });
    await setup.createQueue(spec.rep, { notify: true });
    await setup.stop({ graceful: false, close: true });
    const b = await openBoss(spec.schema, 10);
    boss = b;
    const waiting = new Waiting("pg-boss");
    await b.work<{ id: string }>(spec.rep, { batchSize: 64 }, async (jobs) => {
      for (const j of jobs) waiting.resolve(j.data.id);
    });
    const workers = await startPeerWorker("pg-boss", spec);
    const call = async () => {
      const { id, reply } = waiting.next();
      await Promise.all([b.send(spec.req, { id, payload: PAYLOAD }), reply]);
    };
    return peerSystem({
      name: "pg-boss",
      durability: "PostgreSQL (both ways)",
      durabilityNote: `pg-boss: request and reply jobs are rows committed in PostgreSQL (${settings.durability}); a job whose worker dies is retried after its expiration`,
      version: `PostgreSQL ${settings.version}, pg-boss ${pkgVersion("pg-boss")}`,
      middle: postgresPids,
      workers,
      call,
      close: async () => {
        await workers.stop();
        waiting.failAll(new Error("pg-boss closed"));
        await b.stop({ graceful: false, close: true });
        await dropSchema(spec.schema);
      },
    });
  } catch (e) {
    await boss?.stop({ graceful: false, close: true }).catch(() => undefined);
    await dropSchema(spec.schema).catch(() => undefined);
    throw e;
  }
};
