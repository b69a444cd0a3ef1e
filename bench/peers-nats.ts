// bench:peers contestants on NATS (the official `nats` 2.x client), both sides:
//   nats-core  request/reply: workers are queue subscribers, one connection each, replying with msg.respond();
//              the coordinator uses nc.request() (the client's shared reply inbox). Nothing is stored.
//   jetstream  a work-queue stream (file storage) with one durable pull consumer shared by the workers (each
//              its own connection, consume() with max_messages 1, like a prefetch of 1; explicit acks); a
//              worker publishes its reply to a reply stream (work-queue retention, file storage) and waits
//              for the server's PubAck before acking the request, so the reply is stored before the request
//              is gone. The coordinator publishes each request and waits for its PubAck and for the reply,
//              read from the reply stream through a durable consumer and acked.
import { readFileSync } from "node:fs";
import { AckPolicy, connect, type NatsConnection, RetentionPolicy, StorageType } from "nats";
import {
  CALL_TIMEOUT_MS,
  PAYLOAD,
  peerSystem,
  pidsByComm,
  pkgVersion,
  type System,
  serverPids,
  startPeerWorker,
  Waiting,
  type WorkerSide,
} from "./peers-common.ts";

export const NATS_URL = process.env.BENCH_PEERS_NATS_URL ?? "nats://127.0.0.1:4222";

const enc = new TextEncoder();
const dec = new TextDecoder();

const connectOrSay = async (name: string): Promise<NatsConnection> => {
  try {
    return await connect({ servers: NATS_URL, name, timeout: 5000 });
  } catch (e) {
    throw new Error(`NATS unreachable at ${NATS_URL} (${(e as Error).message})`);
  }
};

/** How nats-server was started, for the durability note (sync_interval is not visible to a client). */
const natsCmdline = (): string => {
  const pid = pidsByComm("nats-server")[0];
  if (pid === undefined) return "nats-server not a local process";
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
};

interface Names {
  tag: string;
}
const subjects = (tag: string) => ({
  core: `bench.${tag}.core`,
  req: `bench.${tag}.req`,
  rep: `bench.${tag}.rep`,
  reqStream: `BENCH_${tag}_REQ`,
  repStream: `BENCH_${tag}_REP`,
});

// ---- worker sides ----

export const natsCoreWorkers = async ({ tag }: Names): Promise<WorkerSide> => {
  let conns: NatsConnection[] = [];
  const closeAll = async () => {
    await Promise.all(conns.map((c) => c.drain()));
    conns = [];
  };
  return {
    async setWorkers(k) {
      await closeAll();
      conns = await Promise.all(
        Array.from({ length: k }, async (_, i) => {
          const nc = await connectOrSay(`bench-core-w${i}`);
          nc.subscribe(subjects(tag).core, { queue: "workers", callback: (_e, m) => m.respond(m.data) });
          await nc.flush();
          return nc;
        }),
      );
    },
    close: closeAll,
  };
};

export const jetStreamWorkers = async ({ tag }: Names): Promise<WorkerSide> => {
  const s = subjects(tag);
  let stops: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    await Promise.all(stops.map((f) => f()));
    stops = [];
  };
  return {
    async setWorkers(k) {
      await closeAll();
      stops = await Promise.all(
        Array.from({ length: k }, async (_, i) => {
          const nc = await connectOrSay(`bench-js-w${i}`);
          const js = nc.jetstream();
          const consumer = await js.consumers.get(s.reqStream, "workers");
          const msgs = await consumer.consume({ max_messages: 1 });
          const loop = (async () => {
            for await (const m of msgs) {
              await js.publish(s.rep, m.data);
              m.ack();
            }
          })();
          return async () => {
            await msgs.close();
            await loop;
            await nc.drain();
          };
        }),
      );
    },
    close: closeAll,
  };
};

// ---- coordinator sides ----

const serverNote = (nc: NatsConnection) =>
  `nats-server ${nc.info?.version ?? "?"}, nats.js ${pkgVersion("nats")}`;

export const natsCoreSystem = async (): Promise<System> => {
  const tag = `core${Math.random().toString(36).slice(2, 8)}`;
  const nc = await connectOrSay("bench-core-coordinator");
  const pids = serverPids("nats-server", "NATS");
  const workers = await startPeerWorker("nats-core", { tag });
  const subj = subjects(tag).core;
  const data = enc.encode(JSON.stringify(PAYLOAD));
  const call = async () => {
    await nc.request(subj, data, { timeout: CALL_TIMEOUT_MS });
  };
  return peerSystem({
    name: "nats-core",
    durability: "none",
    durabilityNote:
      "NATS core request/reply: at most once, nothing stored; no subscriber or a lost connection loses the request",
    version: serverNote(nc),
    middle: () => pids,
    workers,
    call,
    close: async () => {
      await workers.stop();
      await nc.drain();
    },
  });
};

export const jetStreamSystem = async (): Promise<System> => {
  const tag = `js${Math.random().toString(36).slice(2, 8)}`;
  const s = subjects(tag);
  const nc = await connectOrSay("bench-js-coordinator");
  const pids = serverPids("nats-server", "NATS");
  const jsm = await nc.jetstreamManager().catch((e: Error) => {
    throw new Error(`NATS at ${NATS_URL} has no JetStream (${e.message})`);
  });
  const stream = (name: string, subject: string) =>
    jsm.streams.add({
      name,
      subjects: [subject],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
    });
  await stream(s.reqStream, s.req);
  await stream(s.repStream, s.rep);
  const removeStreams = async () => {
    await jsm.streams.delete(s.reqStream).catch(() => false);
    await jsm.streams.delete(s.repStream).catch(() => false);
  };
  try {
    await jsm.consumers.add(s.reqStream, { durable_name: "workers", ack_policy: AckPolicy.Explicit });
    await jsm.consumers.add(s.repStream, { durable_name: "coordinator", ack_policy: AckPolicy.Explicit });
    const js = nc.jetstream();
    const waiting = new Waiting("jetstream");
    const replies = await (await js.consumers.get(s.repStream, "coordinator")).consume();
    const replyLoop = (async () => {
      for await (const m of replies) {
        m.ack();
        waiting.resolve((JSON.parse(dec.decode(m.data)) as { id: string }).id);
      }
    })();
    const workers = await startPeerWorker("jetstream", { tag });
    const body = JSON.stringify(PAYLOAD);
    const call = async () => {
      const { id, reply } = waiting.next();
      await Promise.all([js.publish(s.req, enc.encode(`{"id":"${id}","payload":${body}}`)), reply]);
    };
    return peerSystem({
      name: "jetstream",
      durability: "file (both ways)",
      durabilityNote: `NATS JetStream: request and reply each stored in a file-storage work-queue stream before its PubAck (server default sync_interval: written at once, fsynced every 2 min unless configured, i.e. survives a server crash, not a power loss; server: ${natsCmdline()}); consumers ack explicitly, unacked messages are redelivered after ack_wait`,
      version: `${serverNote(nc)}`,
      middle: () => pids,
      workers,
      call,
      close: async () => {
        await workers.stop();
        await replies.close();
        await replyLoop;
        waiting.failAll(new Error("jetstream closed"));
        await removeStreams();
        await nc.drain();
      },
    });
  } catch (e) {
    await removeStreams();
    await nc.close();
    throw e;
  }
};
