// bench:peers contestant on RabbitMQ (amqplib), both sides, the RPC pattern of RabbitMQ's tutorials made
// durable: a durable request queue and a durable reply queue, persistent messages, publisher confirms on both
// directions. Workers (one connection and confirm channel each, prefetch 1) publish the reply with the
// request's correlationId to its replyTo queue, wait for the broker's confirm, then ack the request, so the
// reply is stored before the request is gone. The coordinator waits for its request's confirm and for the
// reply (consumed with manual acks).
import amqp, { type ChannelModel, type ConfirmChannel } from "amqplib";
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

export const AMQP_URL = process.env.BENCH_PEERS_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";

const connectOrSay = async (): Promise<ChannelModel> => {
  try {
    // noDelay: without it, Nagle and delayed ACKs put ~40 ms into every small RPC.
    const c = await amqp.connect(AMQP_URL, { noDelay: true });
    c.on("error", (e: Error) => console.error(`rabbitmq: ${e.message}`));
    return c;
  } catch (e) {
    throw new Error(
      `RabbitMQ unreachable at ${AMQP_URL.replace(/:[^:@/]*@/, ":***@")} (${(e as Error).message})`,
    );
  }
};

/** Publishes persistently and resolves on the broker's confirm. */
const publish = (ch: ConfirmChannel, queue: string, body: Buffer, o: amqp.Options.Publish) =>
  new Promise<void>((res, rej) => {
    ch.sendToQueue(queue, body, { ...o, persistent: true }, (err) =>
      err ? rej(new Error(`rabbitmq: publish not confirmed: ${String(err)}`)) : res(),
    );
  });

const queues = (tag: string) => ({ req: `bench.${tag}.req`, rep: `bench.${tag}.rep` });

// ---- worker side ----

export const rabbitWorkers = async ({ tag }: { tag: string }): Promise<WorkerSide> => {
  const q = queues(tag);
  let conns: ChannelModel[] = [];
  const closeAll = async () => {
    await Promise.all(conns.map((c) => c.close()));
    conns = [];
  };
  return {
    async setWorkers(k) {
      await closeAll();
      conns = await Promise.all(
        Array.from({ length: k }, async () => {
          const conn = await connectOrSay();
          const ch = await conn.createConfirmChannel();
          await ch.prefetch(1);
          await ch.consume(
            q.req,
            (m) => {
              if (!m) return;
              publish(ch, m.properties.replyTo as string, m.content, {
                correlationId: m.properties.correlationId as string,
              }).then(
                () => ch.ack(m),
                (e: Error) => console.error(e.message),
              );
            },
            { noAck: false },
          );
          return conn;
        }),
      );
    },
    close: closeAll,
  };
};

// ---- coordinator side ----

export const rabbitSystem = async (): Promise<System> => {
  const tag = `mq${Math.random().toString(36).slice(2, 8)}`;
  const q = queues(tag);
  const conn = await connectOrSay();
  const pids = serverPids("beam.smp", "RabbitMQ");
  const ch = await conn.createConfirmChannel();
  const removeQueues = async () => {
    await ch.deleteQueue(q.req).catch(() => undefined);
    await ch.deleteQueue(q.rep).catch(() => undefined);
  };
  try {
    await ch.assertQueue(q.req, { durable: true });
    await ch.assertQueue(q.rep, { durable: true });
    const waiting = new Waiting("rabbitmq");
    await ch.consume(
      q.rep,
      (m) => {
        if (!m) return;
        ch.ack(m);
        waiting.resolve(m.properties.correlationId as string);
      },
      { noAck: false },
    );
    const workers = await startPeerWorker("rabbitmq", { tag });
    const body = Buffer.from(JSON.stringify(PAYLOAD));
    const call = async () => {
      const { id, reply } = waiting.next();
      await Promise.all([publish(ch, q.req, body, { correlationId: id, replyTo: q.rep }), reply]);
    };
    const sp = conn.connection.serverProperties;
    return peerSystem({
      name: "rabbitmq",
      durability: "disk, confirms (both ways)",
      durabilityNote:
        "RabbitMQ RPC: durable (classic) request and reply queues, persistent messages, publisher confirms (a persistent message to a durable queue is confirmed once the broker has written it to disk), manual acks; the worker acks the request only after its reply is confirmed",
      version: `${sp.product ?? "RabbitMQ"} ${sp.version ?? "?"} (Erlang ${sp.platform ?? "?"}), amqplib ${pkgVersion("amqplib")}`,
      middle: () => pids,
      workers,
      call,
      close: async () => {
        await workers.stop();
        waiting.failAll(new Error("rabbitmq closed"));
        await removeQueues();
        await conn.close();
      },
    });
  } catch (e) {
    await removeQueues();
    await conn.close().catch(() => undefined);
    throw e;
  }
};
