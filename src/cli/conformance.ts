import { Command, InvalidArgumentError, Option } from "commander";
import { examples } from "./output.ts";

const say = (s: string) => process.stdout.write(`${s}\n`);

const collect = (v: string, prev: string[] = []) => [...prev, ...v.split(",").filter(Boolean)];

export const conformanceCommand = (): Command => {
  const cmd = new Command("conformance").description(
    "Check that a node implementation (any language) does what the node protocol asks (docs/conformance.md).",
  );
  examples(cmd.command("node"), [
    `fleetlink conformance node --bin 'fleetlink node --handlers examples/conformance-handlers.mjs --identity "$FLEETLINK_WORK_DIR/identity.json"'`,
    `fleetlink conformance node --bin 'python3 -m fleetlink_node --handlers conformance' --scenario echo --scenario leave`,
    "fleetlink conformance node --list",
  ])
    .description(
      "Run a node command against real hub replicas with injected faults; one verdict per scenario, exit 0 iff none fails.",
    )
    .option(
      "--bin <command>",
      "the node under test, a shell command (sh -c) given FLEETLINK_HUB, FLEETLINK_ENROLL_TOKEN, FLEETLINK_NODE_NAME, FLEETLINK_WORK_DIR",
    )
    .addOption(
      new Option("--scenario <name...>", "run only these scenarios (repeatable; default: all)").argParser(
        collect,
      ),
    )
    .option("--list", "list the scenarios with what each checks and its bound, and exit")
    .addOption(
      new Option("--timeout <ms>", "how long the node has to come online after it starts")
        .default(20_000)
        .argParser((v) => {
          const n = Number(v);
          if (!Number.isInteger(n) || n < 100)
            throw new InvalidArgumentError("--timeout: an integer ≥ 100 (ms)");
          return n;
        }),
    )
    .option(
      "--keep",
      "keep the kit's directory (hub database, the node's work dir with calls.log and node.log)",
    )
    .action(async (o) => {
      const { SCENARIOS, runKit, unknownScenarios } = await import("../conformance/kit.ts");
      if (o.list) {
        for (const s of SCENARIOS)
          say(`${s.name.padEnd(16)} ≤ ${(s.boundMs / 1000).toFixed(1)} s  ${s.summary}`);
        return;
      }
      if (!o.bin)
        throw new InvalidArgumentError("--bin is required: the command that runs the node under test");
      const unknown = unknownScenarios(o.scenario ?? []);
      if (unknown.length > 0)
        throw new InvalidArgumentError(`--scenario: unknown ${unknown.join(", ")} (see --list)`);
      // Ctrl-C: exit through process.exit, whose hook ends the node under test (it runs in its own group).
      for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => process.exit(130));
      const t0 = Date.now();
      const report = await runKit({
        bin: o.bin,
        scenarios: o.scenario,
        startTimeoutMs: o.timeout,
        keep: o.keep === true,
        out: say,
      });
      const n = (k: string) => report.verdicts.filter((v) => v.outcome === k).length;
      say(
        `${report.ok ? "conformant" : "NOT conformant"}: ${n("pass")} passed, ${n("fail")} failed, ${n("skip")} skipped (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
      );
      if (o.keep) say(`kept ${report.dir}`);
      process.exitCode = report.ok ? 0 : 1;
    });
  return cmd;
};
