import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Command, InvalidArgumentError, Option } from "commander";
import {
  DEFAULT_BLOB_GRACE_MS,
  DEFAULT_MAX_BLOB_BYTES,
  DEFAULT_RUN_BLOB_QUOTA_BYTES,
} from "../protocol/blobs.ts";
import { applyConfigFile, configOption } from "./config-file.ts";
import { parseBytes, parseDuration, parseInteger, readSecret } from "./flags.ts";
import { createLogger, logOptions } from "./logging.ts";
import { examples } from "./output.ts";

/** "120/1m": at most 120 enrollments per client address per minute. */
const parseRate = (s: string) => {
  const [n, w] = s.split("/");
  return {
    max: parseInteger("--enroll-rate", 1, 1_000_000)(n ?? ""),
    windowMs: parseDuration(w ?? "", "--enroll-rate"),
  };
};

/**
 * Fault injection: `FLEETLINK_FAULT_CLOCK_OFFSET_MS` moves this process's clock (Date.now) by that many ms,
 * to show that replicas with skewed clocks agree (store decisions use the store's clock). Never set it in
 * production.
 */
const skewClockForFaultTests = () => {
  const off = Number(process.env.FLEETLINK_FAULT_CLOCK_OFFSET_MS ?? 0);
  if (!off) return;
  const real = Date.now.bind(Date);
  Date.now = () => real() + off;
  process.stderr.write(`fleetlink: FAULT INJECTION: this process's clock is offset by ${off} ms\n`);
};

export const serveCommand = (): Command =>
  serveExamples(new Command("serve"))
    .description("Run a hub replica. Several replicas may share one --db.")
    .addOption(
      new Option("--db <url>", "store: sqlite:PATH, postgres://…, memory:")
        .env("FLEETLINK_DB")
        .default("sqlite:./fleetlink.db"),
    )
    .addOption(new Option("--host <host>", "address to listen on").env("FLEETLINK_HOST").default("127.0.0.1"))
    .addOption(
      new Option("--port <port>", "port (0 = any free port)")
        .env("FLEETLINK_PORT")
        .default(7070)
        .argParser(parseInteger("--port", 0, 65535)),
    )
    .addOption(
      new Option("--token <token>", "admin/coordinator token (generated and printed if unset)").env(
        "FLEETLINK_TOKEN",
      ),
    )
    .addOption(
      new Option("--token-file <file>", "read the admin token from a file").env("FLEETLINK_TOKEN_FILE"),
    )
    .addOption(
      new Option(
        "--enroll-token <token>",
        "static token nodes enroll with; only enrolls (generated and printed if unset)",
      ).env("FLEETLINK_ENROLL_TOKEN"),
    )
    .addOption(
      new Option("--enroll-token-file <file>", "read the enrollment token from a file").env(
        "FLEETLINK_ENROLL_TOKEN_FILE",
      ),
    )
    .option("--no-static-enroll-token", "nodes enroll only with tokens from `fleetlink tokens create`")
    .addOption(
      new Option("--enroll-approval <mode>", "manual: new nodes wait for `fleetlink nodes approve`")
        .choices(["auto", "manual"])
        .default("auto"),
    )
    .addOption(
      new Option("--enroll-rate <n/window>", "enrollments per client address, e.g. 120/1m")
        .default({ max: 120, windowMs: 60_000 }, "120/1m")
        .argParser(parseRate),
    )
    .addOption(
      new Option("--max-payload <size>", "largest instruction or reply payload, e.g. 4MiB")
        .default(4 * 1024 * 1024, "4MiB")
        .argParser((s) => {
          const n = parseBytes(s, "--max-payload");
          if (n < 1024 || n > 256 * 1024 * 1024)
            throw new InvalidArgumentError("--max-payload: must be between 1KiB and 256MiB");
          return n;
        }),
    )
    .addOption(
      new Option("--max-buffered <size>", "bytes queued for a stream that does not read before it is cut off")
        .default(64 * 1024 * 1024, "64MiB")
        .argParser((s) => parseBytes(s, "--max-buffered")),
    )
    .addOption(new Option("--tls-cert <file>", "TLS certificate (PEM)").env("FLEETLINK_TLS_CERT"))
    .addOption(new Option("--tls-key <file>", "TLS private key (PEM)").env("FLEETLINK_TLS_KEY"))
    .addOption(
      new Option(
        "--client-ca <file>",
        "mutual TLS: nodes (streams, HTTP node API, enrollment) must present a certificate this CA signed (PEM)",
      ).env("FLEETLINK_CLIENT_CA"),
    )
    .addOption(
      new Option(
        "--client-cert-identity <rule>",
        "with --client-ca: the certificate's subject CN must equal the node's name or id",
      )
        .choices(["none", "name", "id"])
        .default("none")
        .env("FLEETLINK_CLIENT_CERT_IDENTITY"),
    )
    .addOption(
      new Option("--max-inflight <n>", "instructions in flight per node")
        .default(32)
        .argParser(parseInteger("--max-inflight", 1, 10_000)),
    )
    .addOption(
      new Option("--heartbeat <ms>", "heartbeat interval given to nodes, in ms")
        .default(5000)
        .argParser(parseInteger("--heartbeat", 100, 3_600_000)),
    )
    .addOption(
      new Option(
        "--store-timeout <ms>",
        "longest one store call may wait (PostgreSQL: connecting or a pooled connection, then its " +
          "statements; SQLite: another process's write lock) before it fails 503 STORE_UNAVAILABLE, in ms",
      )
        .default(5000)
        .argParser(parseInteger("--store-timeout", 100, 600_000)),
    )
    .addOption(
      new Option("--lease <ms>", "instruction lease, in ms")
        .default(30000)
        .argParser(parseInteger("--lease", 100, 86_400_000)),
    )
    .addOption(
      new Option(
        "--checkpoint-store <url>",
        "object storage for checkpoints: file://DIR or s3://BUCKET/PREFIX",
      ).env("FLEETLINK_CHECKPOINT_STORE"),
    )
    .addOption(
      new Option(
        "--checkpoint-interval <duration>",
        "push a snapshot of the hub's SQLite database this often (e.g. 30s, 5m; at least 1s)",
      ).argParser((v) => {
        const ms = parseDuration(v, "--checkpoint-interval");
        if (ms < 1000) throw new InvalidArgumentError("--checkpoint-interval: at least 1s");
        return ms;
      }),
    )
    .addOption(
      new Option("--checkpoint-keep <n>", "complete checkpoints kept (per run, and of the hub)")
        .default(3)
        .argParser(parseInteger("--checkpoint-keep", 1, 1000)),
    )
    .option(
      "--start-from-checkpoint <id>",
      "restore the hub's SQLite database from this checkpoint (or latest) first",
    )
    .addOption(
      new Option(
        "--blobs <url>",
        "blob storage: file://DIR or s3://BUCKET/PREFIX (default: <db>.blobs/ next to a sqlite: file, " +
          "./fleetlink-blobs with postgres; --no-blobs: no blob routes)",
      ).env("FLEETLINK_BLOBS"),
    )
    .option("--no-blobs", "serve no blobs (the blob routes answer 404)")
    .addOption(
      new Option("--max-blob-size <size>", "largest blob accepted (e.g. 8GiB)")
        .default(DEFAULT_MAX_BLOB_BYTES, "8GiB")
        .argParser((v) => parseBytes(v, "--max-blob-size")),
    )
    .addOption(
      new Option("--blob-run-quota <size>", "bytes of distinct blobs one run may hold (e.g. 64GiB)")
        .default(DEFAULT_RUN_BLOB_QUOTA_BYTES, "64GiB")
        .argParser((v) => parseBytes(v, "--blob-run-quota")),
    )
    .addOption(
      new Option("--blob-grace <duration>", "how long a blob outlives its last live reference (e.g. 10m)")
        .default(DEFAULT_BLOB_GRACE_MS, "10m")
        .argParser((v) => parseDuration(v, "--blob-grace")),
    )
    .option("--blob-presign", "nodes download blobs through presigned URLs (s3:// --blobs only)")
    .addOption(
      new Option(
        "--metrics-token-file <file>",
        "a scrape-only token for GET /metrics (the admin token works too)",
      ).env("FLEETLINK_METRICS_TOKEN_FILE"),
    )
    .option("--no-metrics", "no GET /metrics and no metrics recorded")
    .addOption(logOptions("info")[0]!)
    .addOption(logOptions("info")[1]!)
    .addOption(configOption("the hub"))
    .hook("preAction", (cmd) => applyConfigFile(cmd))
    .action(async (o) => {
      skewClockForFaultTests();
      // The hub is imported when it runs, so that declaring this command (for every other one) loads none of it.
      const [
        { pushHubSnapshot, restoreHubSnapshot },
        { openObjectStore, preloadObjectStore },
        { newSecret },
        { createHub },
        { openStore },
        { SqliteStore },
      ] = await Promise.all([
        import("../checkpoint/hub-state.ts"),
        import("../checkpoint/open.ts"),
        import("../hub/http/auth.ts"),
        import("../hub/server.ts"),
        import("../store/open.ts"),
        import("../store/sqlite.ts"),
      ]);
      if (Boolean(o.tlsCert) !== Boolean(o.tlsKey))
        throw new InvalidArgumentError("--tls-cert and --tls-key go together");
      if (o.clientCa && !o.tlsCert)
        throw new InvalidArgumentError("--client-ca needs --tls-cert and --tls-key (mutual TLS)");
      if (o.clientCertIdentity !== "none" && !o.clientCa)
        throw new InvalidArgumentError("--client-cert-identity needs --client-ca");
      const given = readSecret(o.token, o.tokenFile, "token");
      const token = given ?? newSecret();
      const givenEnroll = readSecret(o.enrollToken, o.enrollTokenFile, "enroll-token");
      if (givenEnroll !== undefined && givenEnroll === token)
        throw new InvalidArgumentError(
          "--enroll-token must differ from --token: nodes must never hold the admin token",
        );
      const enrollToken = o.staticEnrollToken === false ? undefined : (givenEnroll ?? newSecret());
      if (o.checkpointStore) await preloadObjectStore(o.checkpointStore);
      const objects = o.checkpointStore ? openObjectStore(o.checkpointStore) : undefined;
      const isSqlite = String(o.db).startsWith("sqlite:");
      if ((o.checkpointInterval || o.startFromCheckpoint) && !(objects && isSqlite))
        throw new InvalidArgumentError(
          "--checkpoint-interval and --start-from-checkpoint need --checkpoint-store and a sqlite: --db",
        );
      if (o.startFromCheckpoint && objects) {
        const path = String(o.db).slice("sqlite:".length).replace(/^\/\//, "").split("?")[0]!;
        const r = await restoreHubSnapshot(objects, path, o.startFromCheckpoint);
        process.stdout.write(`${r.reason}\n`);
      }
      const store = await openStore(o.db, {
        leaseMs: o.lease,
        maxPayloadBytes: o.maxPayload,
        queryTimeoutMs: o.storeTimeout,
        busyTimeoutMs: o.storeTimeout,
      });
      const blobStore = defaultBlobStore(o.blobs, String(o.db));
      if (blobStore) await preloadObjectStore(blobStore);
      const hub = createHub({
        store,
        token,
        enrollToken,
        enrollApproval: o.enrollApproval,
        enrollRateLimit: o.enrollRate,
        maxBufferedBytes: o.maxBuffered,
        maxInflight: o.maxInflight,
        heartbeatIntervalMs: o.heartbeat,
        checkpointStore: objects,
        checkpointKeep: o.checkpointKeep,
        blobStore,
        maxBlobBytes: o.maxBlobSize,
        blobRunQuotaBytes: o.blobRunQuota,
        blobGraceMs: o.blobGrace,
        blobPresign: o.blobPresign === true,
        metrics: o.metrics !== false,
        metricsToken: readSecret(undefined, o.metricsTokenFile, "metrics-token"),
        logger: await createLogger(o.logLevel, o.logFormat),
        ...(o.tlsCert
          ? {
              tls: {
                cert: readFileSync(o.tlsCert),
                key: readFileSync(o.tlsKey),
                ...(o.clientCa
                  ? { clientCa: readFileSync(o.clientCa), clientCertIdentity: o.clientCertIdentity }
                  : {}),
              },
            }
          : {}),
      });
      const url = await hub.listen({ host: o.host, port: o.port }).catch(async (e: NodeJS.ErrnoException) => {
        await hub.close().catch(() => {});
        await store.close().catch(() => {});
        // The port is a flag the user chose: a usage error naming it and the fix, not an unexpected failure.
        if (e?.code === "EADDRINUSE" || e?.code === "EACCES")
          throw new InvalidArgumentError(
            `--port ${o.port}: ${e.code === "EADDRINUSE" ? "already in use on" : "not allowed on"} ${o.host} (another fleetlink serve?): choose another --port, or stop what holds it`,
          );
        throw e;
      });
      const shown = o.tlsCert ? url.replace(/^http:/, "https:") : url;
      process.stdout.write(`fleetlink hub ${hub.id} listening on ${shown} (store ${store.backend})\n`);
      if (!given) process.stdout.write(`admin token (coordinators only): ${token}\n`);
      if (enrollToken && !givenEnroll) process.stdout.write(`enroll token (for nodes): ${enrollToken}\n`);
      let snapshots: ReturnType<typeof setInterval> | undefined;
      if (o.checkpointInterval && objects && store instanceof SqliteStore) {
        const every: number = o.checkpointInterval;
        snapshots = setInterval(() => {
          pushHubSnapshot(store, objects, { keep: o.checkpointKeep }).then(
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

const serveExamples = (c: Command): Command =>
  examples(c, [
    "fleetlink serve --db sqlite:./fleet.db --port 7070 --token-file ./admin.token --enroll-token-file ./enroll.token",
    "fleetlink serve --config /etc/fleetlink/hub.toml --log-format pretty",
    "FLEETLINK_PORT=7071 fleetlink serve --config hub.toml   # env and flags override the file",
  ]);

/**
 * The blob storage URL: --blobs as given; none with --no-blobs (and with a memory: store, whose data dies
 * with the process anyway); else `<db>.blobs/` next to a SQLite file, `./fleetlink-blobs` for PostgreSQL.
 */
const defaultBlobStore = (flag: string | boolean | undefined, db: string): string | undefined => {
  if (typeof flag === "string") return flag;
  if (flag === false || db.startsWith("memory:")) return undefined;
  if (db.startsWith("sqlite:")) {
    const path = db.slice("sqlite:".length).replace(/^\/\//, "").split("?")[0]!;
    return pathToFileURL(resolve(`${path}.blobs`)).href;
  }
  return pathToFileURL(resolve("fleetlink-blobs")).href;
};
