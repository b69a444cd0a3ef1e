import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Command, InvalidArgumentError, Option } from "commander";
import type { NodeState, StandbyOptions } from "../checkpoint/node-side.ts";
import type { Handler } from "../node/handler.ts";
import { applyConfigFile, configOption } from "./config-file.ts";
import { parseHubs } from "./connection.ts";
import { parseInteger, readSecret } from "./flags.ts";
import { createLogger, logOptions } from "./logging.ts";
import { examples } from "./output.ts";

/**
 * Imports a user's module; a module that fails to load (not found, syntax error, throws at top level) is
 * reported with the flag, the resolved path and the error, and where in the module it happened if known.
 */
const importModule = async (path: string, flag: string): Promise<Record<string, unknown>> => {
  const abs = resolve(path);
  const url = pathToFileURL(abs).href;
  try {
    return (await import(url)) as Record<string, unknown>;
  } catch (e) {
    const err = e as Error;
    const where = String(err.stack ?? "")
      .split("\n")
      .find((l) => l.includes(url) || l.includes(abs));
    // Node keeps a syntax error's line to itself (its stack names only the loader): point to where it shows.
    const hint = err instanceof SyntaxError && !where ? ` (\`node --check ${abs}\` shows the line)` : "";
    // A module that does not load is a bad argument (exit status usage), whatever it threw.
    throw Object.assign(
      new InvalidArgumentError(
        `${flag} ${path}: cannot load ${abs}: ${err.name ?? "Error"}: ${err.message ?? String(e)}${hint}${where ? `\n  ${where.trim()}` : ""}`,
      ),
      { cause: e },
    );
  }
};

/** Loads handlers from a module: its `handlers` export, its default export, or its function exports. */
export const loadHandlers = async (path: string): Promise<Record<string, Handler>> => {
  const mod = await importModule(path, "--handlers");
  const named = mod.handlers ?? mod.default;
  // A module of loose function exports is read as handlers; two mistakes look like one and are refused.
  if (named === undefined && typeof mod.snapshot === "function" && typeof mod.restore === "function")
    throw new InvalidArgumentError(
      `--handlers ${path}: this module exports snapshot and restore, a --state module; give it as --state ${path} and the handlers module as --handlers`,
    );
  if (named === undefined && mod.handler !== undefined && typeof mod.handler === "object")
    throw new InvalidArgumentError(
      `--handlers ${path}: exports \`handler\` (an object), not \`handlers\`: rename it to \`export const handlers = { … }\``,
    );
  const src = (named ?? mod) as Record<string, unknown>;
  const out: Record<string, Handler> = {};
  for (const [k, v] of Object.entries(src)) if (typeof v === "function") out[k] = v as Handler;
  if (Object.keys(out).length === 0)
    throw new InvalidArgumentError(`--handlers ${path}: exports no handler functions`);
  return out;
};

/**
 * Loads a node's checkpointable state from a module exporting `snapshot()` (bytes, a string or a stream) and
 * `restore(stream)`, as named exports or on its default export. Their `this` is the object they came from.
 */
export const loadState = async (path: string): Promise<NodeState> => {
  const mod = await importModule(path, "--state");
  const src = [mod, mod.default as Record<string, unknown> | undefined].find(
    (m) => m && typeof m.snapshot === "function" && typeof m.restore === "function",
  );
  if (!src) {
    const has = Object.keys(mod).join(", ") || "nothing";
    throw new InvalidArgumentError(
      `--state ${path}: must export snapshot() and restore(stream) functions (named or on the default export); it exports ${has}`,
    );
  }
  const snapshot = src.snapshot as NodeState["snapshot"];
  const restore = src.restore as NodeState["restore"];
  return { snapshot: () => snapshot.call(src), restore: (data) => restore.call(src, data) };
};

/** "RUN:K": a warm standby for host K of run RUN. */
const parseStandby = (s: string): StandbyOptions => {
  const cut = s.lastIndexOf(":");
  if (cut <= 0) throw new InvalidArgumentError(`--standby: ${JSON.stringify(s)} is not RUN_ID:HOST_INDEX`);
  return { runId: s.slice(0, cut), hostIdx: parseInteger("--standby", 0, 9999)(s.slice(cut + 1)) };
};

export const nodeCommand = (): Command =>
  examples(new Command("node"), [
    "fleetlink node --hub http://127.0.0.1:7070 --name worker-1 --handlers ./handlers.mjs --token-file ./enroll.token",
    "fleetlink node --config /etc/fleetlink/node.toml --log-format pretty",
  ])
    .description("Run a node agent: dial out to a hub, run handlers for the instructions it receives.")
    // Checked in the action, not by commander: they may come from --config, which is read after parsing.
    .addOption(
      new Option("--hub <urls>", "hub replica URL(s), comma-separated (required)").env("FLEETLINK_HUB"),
    )
    .addOption(new Option("--name <name>", "node name (required)").env("FLEETLINK_NODE_NAME"))
    .option("--handlers <module>", "ES module exporting handler functions (method name → function)")
    .option(
      "--state <module>",
      "ES module exporting snapshot() (bytes, string or stream) and restore(stream): fleet checkpoints",
    )
    .addOption(
      new Option(
        "--checkpoint-store <url>",
        "with --state: the hub's checkpoint storage, file://DIR or s3://BUCKET/PREFIX",
      ).env("FLEETLINK_CHECKPOINT_STORE"),
    )
    .addOption(
      new Option(
        "--standby <run:k>",
        "with --state: keep a warm copy of host k of a run, take over on failure",
      ).argParser(parseStandby),
    )
    .addOption(new Option("--token <token>", "enrollment token").env("FLEETLINK_ENROLL_TOKEN"))
    .addOption(
      new Option("--token-file <file>", "read the enrollment token from a file").env(
        "FLEETLINK_ENROLL_TOKEN_FILE",
      ),
    )
    .option("--identity <file>", "keeps the node's id and credential across restarts")
    .option(
      "--reenroll",
      "enroll again as a new node if the hub refuses the identity (e.g. its database was reset)",
    )
    .addOption(
      new Option(
        "--transport <ws|http>",
        "how to reach the hub: the WebSocket stream, or the HTTP node API (long polls)",
      )
        .choices(["ws", "http"])
        .default("ws")
        .env("FLEETLINK_TRANSPORT"),
    )
    .addOption(
      new Option("--cert <file>", "client certificate (PEM) for a hub with --client-ca (mutual TLS)").env(
        "FLEETLINK_NODE_CERT",
      ),
    )
    .addOption(
      new Option("--key <file>", "the client certificate's private key (PEM)").env("FLEETLINK_NODE_KEY"),
    )
    .addOption(
      new Option(
        "--ca <file>",
        "CA certificate (PEM) to trust for the hub's certificate, besides the system's",
      ).env("FLEETLINK_NODE_CA"),
    )
    .addOption(
      new Option("--heartbeat <ms>", "heartbeat interval, in ms")
        .default(5000)
        .argParser(parseInteger("--heartbeat", 100, 3_600_000)),
    )
    .addOption(logOptions("info")[0]!)
    .addOption(logOptions("info")[1]!)
    .addOption(configOption("the node"))
    .hook("preAction", (cmd) => applyConfigFile(cmd))
    .action(async (o) => {
      for (const [flag, v] of [
        ["--hub", o.hub],
        ["--name", o.name],
      ])
        if (!v) throw new InvalidArgumentError(`${flag} is required (a flag, or its key in --config)`);
      if (!o.handlers && !o.state) throw new InvalidArgumentError("give --handlers, --state or both");
      if (o.state && !o.checkpointStore)
        throw new InvalidArgumentError(
          "--state needs --checkpoint-store: the object storage the hub checkpoints to",
        );
      if (o.standby && !o.state) throw new InvalidArgumentError("--standby needs --state");
      if (Boolean(o.cert) !== Boolean(o.key)) throw new InvalidArgumentError("--cert and --key go together");
      const pem = (flag: string, file: string) => {
        try {
          return readFileSync(file);
        } catch (e) {
          throw new InvalidArgumentError(`${flag} ${file}: cannot read it: ${(e as Error).message}`);
        }
      };
      const tls =
        o.cert || o.ca
          ? {
              ...(o.cert ? { cert: pem("--cert", o.cert), key: pem("--key", o.key) } : {}),
              ...(o.ca ? { ca: pem("--ca", o.ca) } : {}),
            }
          : undefined;
      if (o.state) await (await import("../checkpoint/open.ts")).preloadObjectStore(o.checkpointStore);
      const log = (await createLogger(o.logLevel, o.logFormat)).child({ node: o.name });
      const { NodeAgent } = await import("../node/agent.ts");
      const agent = new NodeAgent({
        hubs: parseHubs(String(o.hub)),
        name: o.name,
        handlers: o.handlers ? await loadHandlers(o.handlers) : {},
        enrollToken: readSecret(o.token, o.tokenFile, "token"),
        identityFile: o.identity ?? `.fleetlink/node-${o.name}.json`,
        reenroll: o.reenroll === true,
        heartbeatIntervalMs: o.heartbeat,
        transport: o.transport,
        tls,
        log,
        plugins: o.state
          ? [
              (await import("../checkpoint/node-side.ts")).nodeCheckpoints({
                state: await loadState(o.state),
                objects: o.checkpointStore,
                ...(o.standby ? { standby: o.standby } : {}),
              }),
            ]
          : [],
      });
      let started = false;
      // Each status change is a log line: enrolling, connecting, online, offline (reconnecting), pending, rejected.
      void (async () => {
        for await (const s of agent.status()) {
          const { state, ...rest } = s;
          if (state === "idle") continue;
          const bad = state === "rejected" || state === "offline";
          log[bad ? "warn" : "info"]({ ...rest, state }, state);
          // Rejected once running (another process took the identity, the node was unregistered): the agent has
          // stopped for good, so the process ends, with the exit status of why (6 for a conflict).
          if (state === "rejected" && started) {
            const { exitCodeOf } = await import("./exit-codes.ts");
            const code = s.code ?? "FLEETLINK_E_UNAUTHORIZED";
            process.stderr.write(`fleetlink: ${code}: ${s.reason}\n`);
            await agent.stop({ timeoutMs: 1000 }).catch(() => {});
            process.exit(exitCodeOf({ code }));
          }
        }
      })();
      await agent.start();
      started = true;
      process.stdout.write(`node ${o.name} online as ${agent.nodeId}\n`);
      const stop = async () => {
        await agent.stop();
        process.exit(0);
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
