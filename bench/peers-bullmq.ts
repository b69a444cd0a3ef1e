// bench:peers contestant on BullMQ (Redis), both sides, as BullMQ's docs get a job's result: the coordinator
// adds a job to a queue and waits with job.waitUntilFinished(queueEvents); workers (one BullMQ Worker each,
// concurrency 1, each with its own Redis connections) return the request as the job's return value, which
// BullMQ stores on the job and announces on the queue's event stream.
import { createConnection } from "node:net";
import { Queue, QueueEvents, Worker } from "bullmq";
import {
  CALL_TIMEOUT_MS,
  PAYLOAD,
  peerSystem,
  pkgVersion,
  type System,
  serverPids,
  startPeerWorker,
  type WorkerSide,
} from "./peers-common.ts";

const REDIS_URL = new URL(process.env.BENCH_PEERS_REDIS_URL ?? "redis://127.0.0.1:6379");
/** BullMQ requires maxRetriesPerRequest null on the connections that block. */
const connection = {
  host: REDIS_URL.hostname,
  port: Number(REDIS_URL.port || 6379),
  maxRetriesPerRequest: null,
};

/** Fails naming Redis when nothing answers at REDIS_URL (BullMQ itself would retry forever). */
const reachable = () =>
  new Promise<void>((res, rej) => {
    const sock = createConnection({ host: connection.host, port: connection.port });
    const fail = (why: string) => {
      sock.destroy();
      rej(new Error(`Redis unreachable at ${REDIS_URL.host} (${why})`));
    };
    sock.setTimeout(5000, () => fail("no answer in 5 s"));
    sock.once("error", (e) => fail(e.message));
    sock.once("connect", () => {
      sock.end();
      res();
    });
  });

/** Redis' version and persistence settings, asked of the server: the persistence is BullMQ's durability. */
const redisInfo = async (queue: Queue): Promise<{ version: string; persistence: string }> => {
  // BullMQ's client is ioredis underneath; its interface type names only what BullMQ itself calls.
  const r = (await queue.client) as unknown as {
    info(section: string): Promise<string>;
    config(op: "GET", key: string): Promise<unknown>;
  };
  const info = await r.info("server");
  const version = /redis_version:(\S+)/.exec(info)?.[1] ?? "?";
  const get = async (key: string) => ((await r.config("GET", key)) as string[])[1] ?? "";
  const [aof, save, fsync] = [await get("appendonly"), await get("save"), await get("appendfsync")];
  const persistence =
    aof === "yes"
      ? `AOF on (appendfsync ${fsync})`
      : save
        ? `no AOF, RDB snapshots "${save}" (a crash loses everything since the last snapshot)`
        : 'none (appendonly no, save ""): everything is in memory only and lost with the Redis process';
  return { version, persistence };
};

// ---- worker side ----

export const bullWorkers = async ({ queue }: { queue: string }): Promise<WorkerSide> => {
  let workers: Worker[] = [];
  const closeAll = async () => {
    await Promise.all(workers.map((w) => w.close()));
    workers = [];
  };
  return {
    async setWorkers(k) {
      await closeAll();
      workers = Array.from({ length: k }, () => {
        const w = new Worker(queue, async (job) => job.data, { connection, concurrency: 1 });
        w.on("error", (e) => console.error(`bullmq worker: ${e.message}`));
        return w;
      });
      await Promise.all(workers.map((w) => w.waitUntilReady()));
    },
    close: closeAll,
  };
};

// ---- coordinator side ----

export const bullSystem = async (): Promise<System> => {
  await reachable();
  const pids = serverPids("redis-server", "Redis");
  const name = `bench-${Math.random().toString(36).slice(2, 8)}`;
  const queue = new Queue(name, { connection });
  queue.on("error", (e) => console.error(`bullmq queue: ${e.message}`));
  const info = await redisInfo(queue);
  // waitUntilFinished adds a 'closing' listener per waiting job.
  queue.setMaxListeners(0);
  const events = new QueueEvents(name, { connection });
  events.on("error", (e) => console.error(`bullmq events: ${e.message}`));
  events.setMaxListeners(0);
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
  const workers = await startPeerWorker("bullmq", { queue: name });
  const call = async () => {
    const job = await queue.add("echo", PAYLOAD, { removeOnComplete: 1000, removeOnFail: 1000 });
    await job.waitUntilFinished(events, CALL_TIMEOUT_MS);
  };
  return peerSystem({
    name: "bullmq",
    durability: "Redis, in memory here",
    durabilityNote: `BullMQ: job and return value stored in Redis, which here has persistence ${info.persistence}; a stalled job (worker gone) is moved back to wait`,
    version: `Redis ${info.version}, bullmq ${pkgVersion("bullmq")}, ioredis ${pkgVersion("ioredis")}`,
    middle: () => pids,
    workers,
    call,
    close: async () => {
      await workers.stop();
      await events.close();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
    },
  });
};
