import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { Command, Option } from "commander";
import { type Handler, NodeAgent } from "../node/agent.ts";
import { parseInteger, readSecret } from "./flags.ts";

/** Loads handlers from a module: its `handlers` export, its default export, or its function exports. */
export const loadHandlers = async (path: string): Promise<Record<string, Handler>> => {
  const mod = (await import(pathToFileURL(resolve(path)).href)) as Record<string, unknown>;
  const src = (mod.handlers ?? mod.default ?? mod) as Record<string, unknown>;
  const out: Record<string, Handler> = {};
  for (const [k, v] of Object.entries(src)) if (typeof v === "function") out[k] = v as Handler;
  if (Object.keys(out).length === 0) throw new Error(`${path} exports no handler functions`);
  return out;
};

export const nodeCommand = (): Command =>
  new Command("node")
    .description("Run a node agent: dial out to a hub, run handlers for the instructions it receives.")
    .requiredOption("--hub <urls>", "hub replica URL(s), comma-separated")
    .requiredOption("--name <name>", "node name")
    .requiredOption("--handlers <module>", "ES module exporting handler functions (method name → function)")
    .addOption(new Option("--token <token>", "enrollment token").env("FLEETLINK_ENROLL_TOKEN"))
    .addOption(
      new Option("--token-file <file>", "read the enrollment token from a file").env(
        "FLEETLINK_ENROLL_TOKEN_FILE",
      ),
    )
    .option("--identity <file>", "keeps the node's id and credential across restarts")
    .addOption(
      new Option("--heartbeat <ms>", "heartbeat interval, in ms")
        .default(5000)
        .argParser(parseInteger("--heartbeat", 100, 3_600_000)),
    )
    .action(async (o) => {
      const agent = new NodeAgent({
        hubs: String(o.hub).split(","),
        name: o.name,
        handlers: await loadHandlers(o.handlers),
        enrollToken: readSecret(o.token, o.tokenFile, "token"),
        identityFile: o.identity ?? `.fleetlink/node-${o.name}.json`,
        heartbeatIntervalMs: o.heartbeat,
      });
      void (async () => {
        for await (const s of agent.status()) process.stderr.write(`[${o.name}] ${JSON.stringify(s)}\n`);
      })();
      await agent.start();
      process.stdout.write(`node ${o.name} online as ${agent.nodeId}\n`);
      const stop = async () => {
        await agent.stop();
        process.exit(0);
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
