import { dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError, Option } from "commander";
import { WORKLOAD_NAMES, type WorkloadName } from "../maelstrom/workloads/names.ts";
import { plural } from "../util/plural.ts";

// The runtime and the harness are imported by the subcommand that runs them.
const names: readonly string[] = WORKLOAD_NAMES;

/** The command line of the light node entry beside this file (works from src/ with Node 24 and from dist/). */
export const nodeCommand = (workload: string): string => {
  const self = fileURLToPath(import.meta.url);
  const entry = join(dirname(self), "..", "maelstrom", `main${extname(self)}`);
  return `${JSON.stringify(process.execPath)} ${JSON.stringify(entry)} ${workload}`;
};

/** A number ≥ min (seconds, rates, ms), refused naming its flag. */
const num =
  (flag: string, min = 0) =>
  (v: string): number => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n) || n < min)
      throw new InvalidArgumentError(`${flag}: must be a number ≥ ${min}`);
    return n;
  };
const int = (flag: string, min: number) => (v: string) => {
  const n = num(flag, min)(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`${flag}: must be an integer ≥ ${min}`);
  return n;
};

export const maelstromCommand = (): Command => {
  const cmd = new Command("maelstrom").description(
    "Jepsen Maelstrom: a node runtime and a compatible test harness.",
  );
  cmd
    .command("node")
    .description(
      "Run a node speaking Maelstrom's stdin/stdout protocol (runnable under the real Maelstrom; " +
        "`node src/maelstrom/main.ts <workload>` starts faster, loading nothing else).",
    )
    .argument("<workload>", names.join(" | "))
    .addOption(
      new Option("--root-flush <ms>", "broadcast/g-set: how often the root node sends batches")
        .argParser(num("--root-flush", 1))
        .default(300),
    )
    .action(async (w: string, o) => {
      if (!names.includes(w)) throw new InvalidArgumentError(`workload: must be one of ${names.join(", ")}`);
      const { runWorkload } = await import("../maelstrom/workloads/index.ts");
      await runWorkload(w as WorkloadName, { rootFlushMs: o.rootFlush });
    });
  const opt = (flags: string, what: string, parse: (v: string) => number, def: number) =>
    new Option(flags, what).argParser(parse).default(def);
  cmd
    .command("test")
    .description(
      "Run N node processes under a simulated network with latency and partitions, then check the history.",
    )
    .addOption(new Option("-w, --workload <name>").choices(names).default("broadcast"))
    .option(
      "--bin <command>",
      "shell command that starts one node (default: node src/maelstrom/main.ts <workload>, started directly)",
    )
    .addOption(opt("--node-count <n>", "nodes", int("--node-count", 1), 5))
    .addOption(opt("--time-limit <s>", "seconds of client load", num("--time-limit"), 20))
    .addOption(opt("--rate <r>", "client operations per second", num("--rate", 0.001), 10))
    .addOption(opt("--latency <ms>", "one-way message latency", num("--latency"), 0))
    .addOption(new Option("--nemesis <kind>").choices(["none", "partition"]).default("none"))
    .addOption(
      opt(
        "--nemesis-interval <s>",
        "mean seconds between partition start and heal",
        num("--nemesis-interval"),
        5,
      ),
    )
    .addOption(new Option("--topology <kind>").choices(["grid", "line", "tree", "total"]).default("grid"))
    .addOption(opt("--seed <k>", "random seed", int("--seed", 0), Date.now() % 1_000_000))
    .addOption(
      opt("--recovery <s>", "seconds after the final heal before the final reads", num("--recovery"), 10),
    )
    .addOption(
      opt(
        "--init-timeout <s>",
        "seconds each node has, from its spawn, to answer init (start-up included)",
        num("--init-timeout", 0.001),
        30,
      ),
    )
    .option("--out <dir>", "run folder (default: runs/<time>-<workload>)")
    .option("--json", "print results as JSON on stdout")
    .action(async (o) => {
      const out = o.out ?? join("runs", `${new Date().toISOString().replace(/[:.]/g, "-")}-${o.workload}`);
      const params = {
        workload: o.workload,
        bin: o.bin ?? nodeCommand(o.workload),
        nodeCount: o.nodeCount,
        timeLimitS: o.timeLimit,
        rate: o.rate,
        latencyMs: o.latency,
        nemesis: o.nemesis,
        nemesisIntervalS: o.nemesisInterval,
        topology: o.topology,
        seed: o.seed,
        recoveryS: o.recovery,
        initTimeoutS: o.initTimeout,
        clientTimeoutMs: 5000,
        out,
      };
      // The nodes lead their own process groups (so a signal to this one does not reach them): an interrupted
      // run exits through process.exit, whose exit hook kills them.
      const interrupted = (sig: NodeJS.Signals) => {
        process.stderr.write(`fleetlink maelstrom: ${sig}: stopping the nodes\n`);
        process.exit(130);
      };
      process.once("SIGINT", interrupted);
      process.once("SIGTERM", interrupted);
      const { runTest } = await import("../maelstrom/harness/run.ts");
      const res = await runTest(params, o.json ? () => {} : (s) => process.stderr.write(`${s}\n`));
      if (o.json) process.stdout.write(`${JSON.stringify({ ...res, latencyPoints: undefined })}\n`);
      else {
        const l = res.stableLatencyMs;
        const what = res.ran.clients
          ? `${plural(res.ops.total, "op")} (${res.ops.ok} ok), ${res.msgsPerOp.toFixed(2)} msgs/op` +
            (l ? `, stable latency p50 ${l.p50} ms, max ${l.max} ms, lost ${res.lost?.length ?? 0}` : "")
          : `no client ran: ${res.ran.initOk} of ${plural(params.nodeCount, "node")} answered init within ${params.initTimeoutS} s`;
        process.stdout.write(
          `${res.valid ? "valid" : "INVALID"}: ${res.workload}, ${what}` +
            `\n${res.problems.map((p) => `  ${p}\n`).join("")}report: ${join(out, "report.html")}\n`,
        );
      }
      if (!res.valid) process.exitCode = 2;
    });
  return cmd;
};
