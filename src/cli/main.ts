#!/usr/bin/env node
import module from "node:module";

// Node.js keeps what it compiled (and, for src/*.ts, what it stripped of types) for the next start, as tsc
// does: a CLI command starts again and again, and Maelstrom spawns dozens of nodes at once. Off with
// NODE_DISABLE_COMPILE_CACHE=1; absent before Node 22.1.
module.enableCompileCache?.();

// The version check comes first: on a Node.js without node:sqlite, importing a module that imports it would
// fail before any line here ran, with "No such built-in module: node:sqlite".
const { nodeVersionProblem } = await import("../store/open.ts");

/**
 * Every failure ends the process with one line, the error's code (the hub's) and message, and the exit status
 * of its kind (exit-codes.ts, docs/cli.md). Commander has printed its own parse errors already.
 */
const fail = async (e: unknown): Promise<never> => {
  const [{ exitCodeOf }, { CommanderError, InvalidArgumentError }] = await Promise.all([
    import("./exit-codes.ts"),
    import("commander"),
  ]);
  const err = e as { code?: string; message?: string };
  const printed = e instanceof CommanderError && !(e instanceof InvalidArgumentError);
  // An InvalidArgumentError thrown by an action has commander's code, which says nothing to a user.
  const code = err.code && !(e instanceof CommanderError) ? `${err.code}: ` : "";
  if (!printed) process.stderr.write(`fleetlink: ${code}${err.message ?? String(e)}\n`);
  process.exit(exitCodeOf(e));
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

// Commander exits 1 on a parse error; throwing instead lets fail() give it the usage status. addCommand does
// not pass settings down, so every command of the tree gets it.
const override = (c: InstanceType<typeof Command>): void => {
  c.exitOverride();
  for (const sub of c.commands) override(sub);
};
override(program);

program.parseAsync().catch(fail);
