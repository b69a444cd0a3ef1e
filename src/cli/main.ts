#!/usr/bin/env node
import module from "node:module";

// Node.js keeps what it compiled (and, for src/*.ts, what it stripped of types) for the next start, as tsc
// does: a CLI command starts again and again, and Maelstrom spawns dozens of nodes at once. Off with
// NODE_DISABLE_COMPILE_CACHE=1; absent before Node 22.1.
module.enableCompileCache?.();

// The version check comes first: on a Node.js without node:sqlite, importing a module that imports it would
// fail before any line here ran, with "No such built-in module: node:sqlite".
const { nodeVersionProblem } = await import("../store/open.ts");

/** Every failure ends the process with status 1 and one line: the error's code (the hub's) and message. */
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

// Every command's module is imported, for the tree of commands and options that --help, errors and shell
// completion read; what a command runs (the hub, the SDK, the Maelstrom runtime, pino…) each imports in its
// action, so `fleetlink --version` loads none of it (test/architecture.test.ts, bench:imports).
const [
  { Command },
  call,
  checkpoint,
  completion,
  conformance,
  demo,
  maelstrom,
  node,
  nodes,
  runs,
  serve,
  status,
  store,
  tokens,
  version,
] = await Promise.all([
  import("commander"),
  import("./call.ts"),
  import("./checkpoint.ts"),
  import("./completion.ts"),
  import("./conformance.ts"),
  import("./demo.ts"),
  import("./maelstrom.ts"),
  import("./node.ts"),
  import("./nodes.ts"),
  import("./runs.ts"),
  import("./serve.ts"),
  import("./status.ts"),
  import("./store.ts"),
  import("./tokens.ts"),
  import("./version.ts"),
]);

const program = new Command()
  .name("fleetlink")
  .description(
    "A message hub and SDK: one coordinator drives a fleet of worker nodes.\n" +
      "Commands that talk to a hub take --hub and the admin token from flags, FLEETLINK_HUB / FLEETLINK_TOKEN, " +
      "or a profile of ~/.config/fleetlink/config.toml (docs/cli.md).",
  )
  .version(version.CLI_VERSION)
  .showHelpAfterError("(add --help for usage)");
for (const c of [
  serve.serveCommand(),
  node.nodeCommand(),
  status.statusCommand(),
  nodes.nodesCommand(),
  runs.runsCommand(),
  call.callCommand(),
  tokens.tokensCommand(),
  checkpoint.checkpointCommand(),
  store.storeCommand(),
  demo.demoCommand(),
  conformance.conformanceCommand(),
  maelstrom.maelstromCommand(),
  version.versionCommand(),
  completion.completionCommand(() => program),
])
  program.addCommand(c);

program.parseAsync().catch(fail);
