import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { Command, Option } from "commander";
import pino from "pino";
import { pushHubSnapshot, restoreHubSnapshot } from "../checkpoint/hub-state.ts";
import { openObjectStore } from "../checkpoint/object-store.ts";
import { createHub } from "../hub/server.ts";
import { openStore } from "../store/open.ts";
import { SqliteStore } from "../store/sqlite.ts";

/** "30s", "5m", "1h", "1500ms" or plain milliseconds. */
export const parseDuration = (s: string): number => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new Error(`--checkpoint-interval: ${JSON.stringify(s)} is not a duration like 30s or 5m`);
  const n = Number(m[1]);
  return Math.round(n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "ms") as "ms"]);
};

export const serveCommand = (): Command =>
  new Command("serve")
    .description("Run a hub replica. Several replicas may share one --db.")
    .addOption(
      new Option("--db <url>", "store: sqlite:PATH, postgres://…, memory:")
        .env("FLEETLINK_DB")
        .default("sqlite:./fleetlink.db"),
    )
    .addOption(new Option("--host <host>", "address to listen on").env("FLEETLINK_HOST").default("127.0.0.1"))
    .addOption(new Option("--port <port>", "port (0 = any free port)").env("FLEETLINK_PORT").default("7070"))
    .addOption(
      new Option("--token <token>", "coordinator/admin token (generated and printed if unset)").env(
        "FLEETLINK_TOKEN",
      ),
    )
    .addOption(
      new Option("--enroll-token <token>", "token nodes enroll with (default: --token)").env(
        "FLEETLINK_ENROLL_TOKEN",
      ),
    )
    .addOption(new Option("--tls-cert <file>", "TLS certificate (PEM)").env("FLEETLINK_TLS_CERT"))
    .addOption(new Option("--tls-key <file>", "TLS private key (PEM)").env("FLEETLINK_TLS_KEY"))
    .addOption(new Option("--max-inflight <n>", "instructions in flight per node").default("32"))
    .addOption(new Option("--heartbeat <ms>", "heartbeat interval given to nodes").default("5000"))
    .addOption(new Option("--lease <ms>", "instruction lease").default("30000"))
    .addOption(new Option("--log-level <level>", "pino level").env("FLEETLINK_LOG_LEVEL").default("warn"))
    .addOption(
      new Option(
        "--checkpoint-store <url>",
        "object storage for checkpoints: file://DIR or s3://BUCKET/PREFIX",
      ).env("FLEETLINK_CHECKPOINT_STORE"),
    )
    .option(
      "--checkpoint-interval <duration>",
      "push a snapshot of the hub's SQLite database this often (e.g. 30s, 5m)",
    )
    .option("--checkpoint-keep <n>", "complete checkpoints kept (per run, and of the hub)", "3")
    .option(
      "--start-from-checkpoint <id>",
      "restore the hub's SQLite database from this checkpoint (or latest) first",
    )
    .action(async (o) => {
      if (Boolean(o.tlsCert) !== Boolean(o.tlsKey)) throw new Error("--tls-cert and --tls-key go together");
      const token: string = o.token ?? randomBytes(18).toString("base64url");
      const objects = o.checkpointStore ? openObjectStore(o.checkpointStore) : undefined;
      const isSqlite = String(o.db).startsWith("sqlite:");
      if ((o.checkpointInterval || o.startFromCheckpoint) && !(objects && isSqlite))
        throw new Error(
          "--checkpoint-interval and --start-from-checkpoint need --checkpoint-store and a sqlite: --db",
        );
      if (o.startFromCheckpoint && objects) {
        const path = String(o.db).slice("sqlite:".length).replace(/^\/\//, "").split("?")[0]!;
        const r = await restoreHubSnapshot(objects, path, o.startFromCheckpoint);
        process.stdout.write(`${r.reason}\n`);
      }
      const store = await openStore(o.db, { leaseMs: Number(o.lease) });
      const hub = createHub({
        store,
        token,
        enrollToken: o.enrollToken,
        maxInflight: Number(o.maxInflight),
        heartbeatIntervalMs: Number(o.heartbeat),
        checkpointStore: objects,
        checkpointKeep: Number(o.checkpointKeep),
        logger: pino({ level: o.logLevel }, pino.destination(2)),
        ...(o.tlsCert ? { tls: { cert: readFileSync(o.tlsCert), key: readFileSync(o.tlsKey) } } : {}),
      });
      const url = await hub.listen({ host: o.host, port: Number(o.port) });
      const shown = o.tlsCert ? url.replace(/^http:/, "https:") : url;
      process.stdout.write(`fleetlink hub ${hub.id} listening on ${shown} (store ${store.backend})\n`);
      if (!o.token) process.stdout.write(`token: ${token}\n`);
      let snapshots: ReturnType<typeof setInterval> | undefined;
      if (o.checkpointInterval && objects && store instanceof SqliteStore) {
        const every = parseDuration(o.checkpointInterval);
        snapshots = setInterval(() => {
          pushHubSnapshot(store, objects, { keep: Number(o.checkpointKeep) }).then(
            (m) => process.stdout.write(`hub snapshot ${m.id} (${m.hosts[0]!.size} bytes)\n`),
            (e: Error) => process.stderr.write(`hub snapshot failed: ${e.message}\n`),
          );
        }, every);
      }
      const stop = async () => {
        clearInterval(snapshots);
        await hub.close();
        await store.close();
        process.exit(0);
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
