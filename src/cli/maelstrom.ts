import { dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, Option } from "commander";
import { runTest } from "../maelstrom/harness/run.ts";
import { runWorkload, type WorkloadName, workloads } from "../maelstrom/workloads/index.ts";

const names = Object.keys(workloads);

/** The command line of the light node entry beside this file (works from src/ with Node 24 and from dist/). */
export const nodeCommand = (workload: string): string => {
  const self = fileURLToPath(import.meta.url);
  const entry = join(dirname(self), "..", "maelstrom", `main${extname(self)}`);
  return `${JSON.stringify(process.execPath)} ${JSON.stringify(entry)} ${workload}`;
};

export const maelstromCommand = (): Command => {
  const cmd = new Command("maelstrom").description(
    "Jepsen Maelstrom: a node runtime and a compatible test harness.",
  );
  cmd
    .command("node")
    .description("Run a node speaking Maelstrom's stdin/stdout protocol (runnable under the real Maelstrom).")
    .argument("<workload>", names.join(" | "))
    .option("--root-flush <ms>", "broadcast/g-set: how often the root node sends batches", "300")
    .action(async (w: string, o) => {
      if (!names.includes(w)) throw new Error(`workload: must be one of ${names.join(", ")}`);
      await runWorkload(w as WorkloadName, { rootFlushMs: Number(o.rootFlush) });
    });
  cmd
    .command("test")
    .description(
      "Run N node processes under a simulated network with latency and partitions, then check the history.",
    )
    .addOption(new Option("-w, --workload <name>").choices(names).default("broadcast"))
    .option("--bin <command>", "shell command that starts one node (default: this CLI's node)")
    .option("--node-count <n>", "nodes", "5")
    .option("--time-limit <s>", "seconds of client load", "20")
    .option("--rate <r>", "client operations per second", "10")
    .option("--latency <ms>", "one-way message latency", "0")
    .addOption(new Option("--nemesis <kind>").choices(["none", "partition"]).default("none"))
    .option("--nemesis-interval <s>", "mean seconds between partition start and heal", "5")
    .addOption(new Option("--topology <kind>").choices(["grid", "line", "tree", "total"]).default("grid"))
    .option("--seed <k>", "random seed", String(Date.now() % 1_000_000))
    .option("--recovery <s>", "seconds after the final heal before the final reads", "10")
    .option("--out <dir>", "run folder (default: runs/<time>-<workload>)")
    .option("--json", "print results as JSON on stdout")
    .action(async (o) => {
      const out = o.out ?? join("runs", `${new Date().toISOString().replace(/[:.]/g, "-")}-${o.workload}`);
      const params = {
        workload: o.workload,
        bin: o.bin ?? nodeCommand(o.workload),
        nodeCount: Number(o.nodeCount),
        timeLimitS: Number(o.timeLimit),
        rate: Number(o.rate),
        latencyMs: Number(o.latency),
        nemesis: o.nemesis,
        nemesisIntervalS: Number(o.nemesisInterval),
        topology: o.topology,
        seed: Number(o.seed),
        recoveryS: Number(o.recovery),
        clientTimeoutMs: 5000,
        out,
      };
      for (const [k, v] of Object.entries(params))
        if (typeof v === "number" && !(v >= 0)) throw new Error(`--${k}: must be a number ≥ 0`);
      const res = await runTest(params, o.json ? () => {} : (s) => process.stderr.write(`${s}\n`));
      if (o.json) process.stdout.write(`${JSON.stringify({ ...res, latencyPoints: undefined })}\n`);
      else {
        const l = res.stableLatencyMs;
        process.stdout.write(
          `${res.valid ? "valid" : "INVALID"}: ${res.workload}, ${res.ops.total} ops (${res.ops.ok} ok), ` +
            `${res.msgsPerOp.toFixed(2)} msgs/op` +
            (l ? `, stable latency p50 ${l.p50} ms, max ${l.max} ms, lost ${res.lost?.length ?? 0}` : "") +
            `\n${res.problems.map((p) => `  ${p}\n`).join("")}report: ${join(out, "report.html")}\n`,
        );
      }
      if (!res.valid) process.exitCode = 2;
    });
  return cmd;
};
