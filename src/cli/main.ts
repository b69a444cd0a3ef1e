#!/usr/bin/env node
// Only the version check is imported statically: on a Node.js without node:sqlite, a static import of the
// commands would fail before any line here ran, with "No such built-in module: node:sqlite".
import { nodeVersionProblem } from "../store/open.ts";

const fail = (e: unknown): never => {
  const err = e as { code?: string; message?: string };
  process.stderr.write(`fleetlink: ${err.code ? `${err.code}: ` : ""}${err.message ?? String(e)}\n`);
  process.exit(1);
};

const problem = nodeVersionProblem();
if (problem) {
  process.stderr.write(`${problem}\n`);
  process.exit(1);
}

const [{ Command }, admin, checkpoint, demo, maelstrom, node, serve, store] = await Promise.all([
  import("commander"),
  import("./admin.ts"),
  import("./checkpoint.ts"),
  import("./demo.ts"),
  import("./maelstrom.ts"),
  import("./node.ts"),
  import("./serve.ts"),
  import("./store.ts"),
]);

const program = new Command()
  .name("fleetlink")
  .description("A message hub and SDK: one coordinator drives a fleet of worker nodes.")
  .version("0.1.0");
program.addCommand(serve.serveCommand());
program.addCommand(node.nodeCommand());
program.addCommand(demo.demoCommand());
program.addCommand(store.storeCommand());
program.addCommand(maelstrom.maelstromCommand());
program.addCommand(checkpoint.checkpointCommand());
program.addCommand(admin.tokensCommand());
program.addCommand(admin.nodesCommand());

program.parseAsync().catch(fail);
