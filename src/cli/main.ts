#!/usr/bin/env node
import { Command } from "commander";
import { nodesCommand, tokensCommand } from "./admin.ts";
import { checkpointCommand } from "./checkpoint.ts";
import { demoCommand } from "./demo.ts";
import { maelstromCommand } from "./maelstrom.ts";
import { nodeCommand } from "./node.ts";
import { serveCommand } from "./serve.ts";
import { storeCommand } from "./store.ts";

const program = new Command()
  .name("fleetlink")
  .description("A message hub and SDK: one coordinator drives a fleet of worker nodes.")
  .version("0.1.0");
program.addCommand(serveCommand());
program.addCommand(nodeCommand());
program.addCommand(demoCommand());
program.addCommand(storeCommand());
program.addCommand(maelstromCommand());
program.addCommand(checkpointCommand());
program.addCommand(tokensCommand());
program.addCommand(nodesCommand());

program.parseAsync().catch((e: unknown) => {
  const err = e as { code?: string; message?: string };
  process.stderr.write(`fleetlink: ${err.code ? `${err.code}: ` : ""}${err.message ?? String(e)}\n`);
  process.exit(1);
});
