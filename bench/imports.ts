// What each entry point costs to load: modules loaded, import time, and the start-up of two CLI commands,
// each the median of fresh processes, against `node -e ""` and `import("ws")` measured in the same run.
// The package entries resolve through package.json's exports (dist/, what users get): run `npm run build`
// first (`npm run bench:imports` does). The CLI is measured from dist/ and from src/ (type stripping).
// Run: npm run bench:imports   (IMPORTS_RUNS=<n> fresh processes per row; default 7)
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const RUNS = Number(process.env.IMPORTS_RUNS ?? 7);
const root = join(import.meta.dirname, "..");
const work = mkdtempSync(join(tmpdir(), "fleetlink-imports-"));

// Preloaded into every measured process (also the baseline, so its own cost cancels out). With COUNT set it
// counts, through synchronous module hooks (they see import and require alike), the distinct module URLs
// loaded, split into files and node: built-ins. At exit it writes the process's CPU time and counts to OUT.
const probe = join(work, "probe.mjs");
writeFileSync(
  probe,
  `import { registerHooks } from "node:module";
import { writeFileSync } from "node:fs";
const files = new Set(), builtins = new Set();
if (process.env.FLEETLINK_BENCH_COUNT)
  registerHooks({ load(url, context, next) { (url.startsWith("node:") ? builtins : files).add(url); return next(url, context); } });
process.on("exit", () => {
  const c = process.cpuUsage();
  writeFileSync(process.env.FLEETLINK_BENCH_OUT, JSON.stringify({ cpuMs: (c.user + c.system) / 1000,
    files: files.size, builtins: builtins.size, importMs: globalThis.__importMs ?? 0 }));
});
`,
);

interface Target {
  name: string;
  args: string[];
  /** Sent on stdin; the process counts as ready at its first stdout line, then stdin is closed. */
  stdin?: string;
  env?: Record<string, string>;
}

/** An in-process timed import, so that "import ms" leaves out the process start the baseline measures. */
const importing = (spec: string): string[] => [
  "--input-type=module",
  "-e",
  `const t = performance.now(); await import(${JSON.stringify(spec)}); globalThis.__importMs = performance.now() - t;`,
];

const init = `${JSON.stringify({ src: "c0", dest: "n1", body: { type: "init", msg_id: 1, node_id: "n1", node_ids: ["n1"] } })}\n`;
// Each CLI row twice: as it starts again (Node's compile cache, where the CLI enables it, is warm from the
// counting run) and with the cache off, as on a first start.
const cold = { NODE_DISABLE_COMPILE_CACHE: "1" };
const cli = (main: string, label: string): Target[] =>
  existsSync(join(root, main))
    ? [
        { name: `fleetlink --version (${label})`, args: [main, "--version"] },
        { name: `fleetlink --version (${label}, no compile cache)`, args: [main, "--version"], env: cold },
        {
          name: `fleetlink maelstrom node broadcast → init_ok (${label})`,
          args: [main, "maelstrom", "node", "broadcast"],
          stdin: init,
        },
        {
          name: `fleetlink maelstrom node broadcast → init_ok (${label}, no compile cache)`,
          args: [main, "maelstrom", "node", "broadcast"],
          stdin: init,
          env: cold,
        },
      ]
    : [];

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  exports: Record<string, unknown>;
};
const entries = [".", "./coordinator", "./node", "./checkpoints", "./hub"].filter((e) => e in pkg.exports);
const targets: Target[] = [
  { name: 'baseline: node -e ""', args: ["-e", ""] },
  { name: 'baseline: import("ws")', args: importing("ws") },
  ...entries.map((e) => ({
    name: `import ${e === "." ? "fleetlink" : `fleetlink/${e.slice(2)}`}`,
    args: importing(`fleetlink${e.slice(1)}`),
  })),
  ...cli("dist/cli/main.js", "dist"),
  ...cli("src/cli/main.ts", "src"),
];

interface Sample {
  wallMs: number;
  cpuMs: number;
  files: number;
  builtins: number;
  importMs: number;
}

const once = (t: Target, count: boolean, i: number): Promise<Sample> =>
  new Promise((resolve, reject) => {
    const out = join(work, `out-${i}.json`);
    const t0 = performance.now();
    let wallMs = 0;
    const child = spawn(process.execPath, ["--import", probe, ...t.args], {
      cwd: root,
      env: {
        ...process.env,
        FLEETLINK_BENCH_OUT: out,
        ...t.env,
        ...(count ? { FLEETLINK_BENCH_COUNT: "1" } : {}),
      },
      stdio: ["pipe", "pipe", "inherit"],
    });
    child.stdout.once("data", () => {
      wallMs = performance.now() - t0;
      child.stdin.end();
    });
    if (t.stdin) child.stdin.write(t.stdin);
    else child.stdin.end();
    // A row that never gets ready (a broken build) fails the run instead of hanging it.
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (!t.stdin) wallMs = performance.now() - t0;
      try {
        if (code !== 0) throw new Error(`${t.name}: exit ${code}`);
        resolve({ ...(JSON.parse(readFileSync(out, "utf8")) as Omit<Sample, "wallMs">), wallMs });
      } catch (e) {
        reject(e);
      }
    });
  });

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

console.log(
  `bench:imports — ${RUNS} fresh processes per row (median), Node ${process.version}, ${process.platform}-${process.arch}\n` +
    "modules: distinct files / node: built-ins loaded (module hooks, one extra run); import ms: in-process\n" +
    "`await import()`; wall ms: spawn → exit (CLI maelstrom: → first stdout line, its init_ok); CPU ms: the\n" +
    'process\'s user+system time at exit; ×: wall relative to the `node -e ""` baseline.\n',
);
const rows: string[][] = [];
let base = 0;
try {
  for (const t of targets) {
    const counted = await once(t, true, 0);
    const s: Sample[] = [];
    for (let i = 0; i < RUNS; i++) s.push(await once(t, false, i + 1));
    const wall = median(s.map((x) => x.wallMs));
    if (!base) base = wall;
    rows.push([
      t.name,
      `${counted.files} / ${counted.builtins}`,
      t.args.includes("--input-type=module") ? median(s.map((x) => x.importMs)).toFixed(0) : "",
      wall.toFixed(0),
      median(s.map((x) => x.cpuMs)).toFixed(0),
      (wall / base).toFixed(1),
    ]);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
const head = ["entry", "modules (files / built-ins)", "import ms", "wall ms", "CPU ms", "×"];
console.log(`| ${head.join(" | ")} |\n|${head.map(() => " --- ").join("|")}|`);
for (const r of rows) console.log(`| ${r.join(" | ")} |`);
