import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { Command, Option } from "commander";
import pino from "pino";
import { createHub } from "../hub/server.ts";
import { openStore } from "../store/open.ts";

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
    .action(async (o) => {
      if (Boolean(o.tlsCert) !== Boolean(o.tlsKey)) throw new Error("--tls-cert and --tls-key go together");
      const token: string = o.token ?? randomBytes(18).toString("base64url");
      const store = await openStore(o.db, { leaseMs: Number(o.lease) });
      const hub = createHub({
        store,
        token,
        enrollToken: o.enrollToken,
        maxInflight: Number(o.maxInflight),
        heartbeatIntervalMs: Number(o.heartbeat),
        logger: pino({ level: o.logLevel }, pino.destination(2)),
        ...(o.tlsCert ? { tls: { cert: readFileSync(o.tlsCert), key: readFileSync(o.tlsKey) } } : {}),
      });
      const url = await hub.listen({ host: o.host, port: Number(o.port) });
      const shown = o.tlsCert ? url.replace(/^http:/, "https:") : url;
      process.stdout.write(`fleetlink hub ${hub.id} listening on ${shown} (store ${store.backend})\n`);
      if (!o.token) process.stdout.write(`token: ${token}\n`);
      const stop = async () => {
        await hub.close();
        await store.close();
        process.exit(0);
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
