// The worker process of bench:peers: `node bench/peers-worker.ts <role>` holds the consumers of one peer system
// (ws relay nodes, NATS, JetStream, RabbitMQ, BullMQ or pg-boss), all in this one process, each echoing the
// request back as its reply. Driven over IPC by startPeerWorker (peers-common.ts):
//   { start: spec }   connect and set up (no consumers yet)  → { ready: true }
//   { workers: k }    stop the consumers, start k new ones    → { workers: k }
//   { stop: true }    close everything and exit              → { stopped: true }
// It exits by itself when the parent goes away (IPC disconnect), so a killed benchmark leaves nothing behind.
import type { WorkerSide } from "./peers-common.ts";

const roles: Record<string, (spec: never) => Promise<WorkerSide>> = {
  ws: async (spec) => (await import("./peers-ws.ts")).wsWorkers(spec),
  "nats-core": async (spec) => (await import("./peers-nats.ts")).natsCoreWorkers(spec),
  jetstream: async (spec) => (await import("./peers-nats.ts")).jetStreamWorkers(spec),
  rabbitmq: async (spec) => (await import("./peers-rabbitmq.ts")).rabbitWorkers(spec),
  bullmq: async (spec) => (await import("./peers-bullmq.ts")).bullWorkers(spec),
  "pg-boss": async (spec) => (await import("./peers-pgboss.ts")).pgBossWorkers(spec),
};

const main = () => {
  const role = process.argv[2] ?? "";
  const open = roles[role];
  if (!open) throw new Error(`peers-worker: unknown role ${JSON.stringify(role)}`);
  let side: WorkerSide | undefined;
  const fail = (e: unknown) =>
    process.send!({ error: `${role}: ${String((e as Error).stack ?? e)}` }, () => process.exit(1));
  process.on("disconnect", () => process.exit(0));
  process.on("uncaughtException", fail);
  process.on("unhandledRejection", fail);
  process.on("message", (m: { start?: unknown; workers?: number; stop?: boolean }) => {
    void (async () => {
      try {
        if (m.start !== undefined) {
          side = await open(m.start as never);
          process.send!({ ready: true });
        } else if (m.workers !== undefined) {
          await side!.setWorkers(m.workers);
          process.send!({ workers: m.workers });
        } else if (m.stop) {
          await side?.close();
          process.send!({ stopped: true }, () => process.exit(0));
        }
      } catch (e) {
        fail(e);
      }
    })();
  });
};

main();
