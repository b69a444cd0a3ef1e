#!/usr/bin/env node
// A Maelstrom node with nothing else loaded (fast to start: the harness spawns dozens):
//   node src/maelstrom/main.ts <echo|unique-ids|g-set|broadcast> [--root-flush MS]
import module from "node:module";
import type { WorkloadName } from "./workloads/names.ts";

// The harness starts dozens of these at once: each start after the first reuses what Node.js compiled (and
// stripped of types) before. Off with NODE_DISABLE_COMPILE_CACHE=1; absent before Node 22.1.
module.enableCompileCache?.();
const { runWorkload, workloads } = await import("./workloads/index.ts");

const [w, ...rest] = process.argv.slice(2);
if (!w || !(w in workloads)) {
  process.stderr.write(`usage: main.ts <${Object.keys(workloads).join("|")}> [--root-flush MS]\n`);
  process.exit(2);
}
const flush = rest.indexOf("--root-flush");
await runWorkload(w as WorkloadName, flush >= 0 ? { rootFlushMs: Number(rest[flush + 1]) } : {});
