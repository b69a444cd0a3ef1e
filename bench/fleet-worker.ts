// The fleet side of the end-to-end benchmarks (bench:call, bench:throughput, bench:fanout).
//
// Run as a child process (`fork`), this file is a node worker: it starts NodeAgents (each enrolls over HTTP, then
// holds its own WebSocket stream to the hub) with an `echo` handler and reports their ids to the parent.
// Imported, it gives the parent what it needs around that: the hub as its own OS process (`fleetlink serve`),
// node workers, fresh PostgreSQL schemas, percentiles and table printing.
import { type ChildProcess, execFileSync, fork, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { NodeAgent } from "../src/node/agent.ts";

export type Backend = "sqlite" | "postgres";

export const PG_URL =
  process.env.FLEETLINK_BENCH_POSTGRES_URL ??
  process.env.FLEETLINK_TEST_POSTGRES_URL ??
  "postgres://root@127.0.0.1:5432/test";
export const TOKEN = "bench-token";
/** What nodes enroll with (never the admin token). */
export const ENROLL_TOKEN = "bench-enroll-token";
const CLI = join(import.meta.dirname, "../src/cli/main.ts");

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

// ---- worker: NodeAgents in this process ----

interface StartNodes {
  hub: string;
  count: number;
  prefix: string;
  heartbeatIntervalMs: number;
  /** Agents enrolling and connecting at the same time. */
  concurrency: number;
  /** How the agents reach the hub (NodeAgentOptions.transport). */
  transport: "ws" | "http";
}

const runWorker = () => {
  const agents: NodeAgent[] = [];
  const handlers = { echo: (p: unknown) => p };
  process.on("message", (m: { start?: StartNodes; stop?: boolean }) => {
    void (async () => {
      try {
        if (m.start) {
          const s = m.start;
          const ids: string[] = new Array(s.count);
          let next = 0;
          await Promise.all(
            Array.from({ length: Math.min(s.concurrency, s.count) }, async () => {
              for (let i = next++; i < s.count; i = next++) {
                const a = new NodeAgent({
                  hubs: [s.hub],
                  name: `${s.prefix}-${i}`,
                  handlers,
                  enrollToken: ENROLL_TOKEN,
                  heartbeatIntervalMs: s.heartbeatIntervalMs,
                  transport: s.transport,
                });
                await a.start();
                agents.push(a);
                ids[i] = a.nodeId!;
              }
            }),
          );
          process.send!({ ready: ids });
        } else if (m.stop) {
          await Promise.all(agents.map((a) => a.stop({ timeoutMs: 1000 })));
          process.send!({ stopped: true }, () => process.exit(0));
        }
      } catch (e) {
        process.send!({ error: String((e as Error).stack ?? e) }, () => process.exit(1));
      }
    })();
  });
};

if (import.meta.main) runWorker();

// ---- parent side ----

/** `ulimit -n` (soft, hard) as the shell this script's children start from sees it. */
export const fdLimits = (): { soft: number; hard: number } => {
  const read = (flag: string) => {
    const v = execFileSync("sh", ["-c", `ulimit ${flag} -n`], { encoding: "utf8" }).trim();
    return v === "unlimited" ? Number.POSITIVE_INFINITY : Number(v);
  };
  return { soft: read("-S"), hard: read("-H") };
};

/** Node command line for a child; raises its open-file limit first when `fds` exceeds the soft limit. */
const withFds = (args: string[], fds: number | undefined): { cmd: string; args: string[] } => {
  if (fds === undefined || fds <= fdLimits().soft) return { cmd: process.execPath, args };
  // `exec` keeps the pid, so the caller's child.pid is the Node process itself.
  return { cmd: "sh", args: ["-c", `ulimit -n ${fds} && exec "$0" "$@"`, process.execPath, ...args] };
};

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});
const track = (c: ChildProcess) => {
  children.add(c);
  c.once("exit", () => children.delete(c));
  return c;
};

export const exited = (c: ChildProcess): Promise<void> =>
  c.exitCode !== null || c.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => c.once("exit", () => r()));

/** Forks `file` with IPC; `fds` raises the child's open-file limit. */
export const forkWorker = (file: string, args: string[] = [], fds?: number): ChildProcess => {
  const { cmd, args: full } = withFds([file, ...args], fds);
  if (cmd === process.execPath)
    return track(fork(file, args, { execArgv: [], stdio: ["ignore", "inherit", "inherit", "ipc"] }));
  return track(spawn(cmd, full, { stdio: ["ignore", "inherit", "inherit", "ipc"] }));
};

/** Sends `msg` (if given) and waits for the first message with key `key`. */
export const ask = <T>(c: ChildProcess, key: string, msg?: unknown, timeoutMs = 120_000): Promise<T> =>
  new Promise((res, rej) => {
    const timer = setTimeout(() => done(new Error(`worker: no ${key} within ${timeoutMs} ms`)), timeoutMs);
    const onMsg = (m: Record<string, unknown>) => {
      if (m.error) done(new Error(`worker: ${m.error}`));
      else if (key in m) done(null, m[key] as T);
    };
    const onExit = (code: number | null, sig: string | null) =>
      done(new Error(`worker exited ${code ?? sig} before ${key}`));
    const done = (e: Error | null, v?: T) => {
      clearTimeout(timer);
      c.off("message", onMsg);
      c.off("exit", onExit);
      if (e) rej(e);
      else res(v as T);
    };
    c.on("message", onMsg);
    c.once("exit", onExit);
    if (msg !== undefined) c.send(msg as object);
  });

export interface HubProc {
  url: string;
  pid: number;
  child: ChildProcess;
  /** SIGTERM (graceful) and SIGKILL after 10 s; `kill` sends SIGKILL at once (the store is thrown away anyway). */
  stop(opts?: { kill?: boolean }): Promise<void>;
}

/** `fleetlink serve` on `db` as its own OS process. */
export const startHub = (
  db: string,
  opts: { fds?: number; extra?: string[]; nodeArgs?: string[] } = {},
): Promise<HubProc> =>
  new Promise((resolve, reject) => {
    const { cmd, args } = withFds(
      [
        // Node's own flags for the hub (`--cpu-prof`: see BENCH_HUB_NODE_ARGS in bench/fanout.ts).
        ...(opts.nodeArgs ?? []),
        CLI,
        "serve",
        "--db",
        db,
        "--port",
        "0",
        "--token",
        TOKEN,
        "--enroll-token",
        ENROLL_TOKEN,
        // Benchmarks enroll thousands of nodes from one address.
        "--enroll-rate",
        "1000000/1s",
        // One log line per request is an operator's default, not what a benchmark measures.
        "--log-level",
        "warn",
        ...(opts.extra ?? []),
      ],
      opts.fds,
    );
    const child = track(spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }));
    let out = "";
    let err = "";
    let ready = false;
    child.stderr!.on("data", (d) => {
      err = (err + d).slice(-20_000);
    });
    const timer = setTimeout(() => reject(new Error(`hub not ready in 30 s: ${err}`)), 30_000);
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m && !ready) {
        ready = true;
        clearTimeout(timer);
        resolve({
          url: m[1]!,
          pid: child.pid!,
          child,
          stop: async ({ kill = false } = {}) => {
            if (child.exitCode === null && child.signalCode === null)
              child.kill(kill ? "SIGKILL" : "SIGTERM");
            const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
            await exited(child);
            clearTimeout(t);
            if (err.trim())
              process.stderr.write(`hub stderr (last lines):\n${err.split("\n").slice(-10).join("\n")}\n`);
          },
        });
      }
    });
    child.once("exit", (code, sig) => {
      clearTimeout(timer);
      if (!ready) reject(new Error(`hub exited ${code ?? sig}: ${err.slice(-3000)}`));
      else if (code !== 0 && sig !== "SIGTERM" && sig !== "SIGKILL")
        process.stderr.write(`hub exited unexpectedly (${code ?? sig}):\n${err.slice(-3000)}\n`);
    });
  });

export interface NodeWorkers {
  ids: string[];
  pids: number[];
  stop(): Promise<void>;
}

/** `count` NodeAgents split over `workers` processes; resolves once every one is online. */
export const startNodes = async (
  hub: string,
  count: number,
  o: {
    workers?: number;
    heartbeatIntervalMs?: number;
    concurrency?: number;
    prefix?: string;
    transport?: "ws" | "http";
  } = {},
): Promise<NodeWorkers> => {
  const workers = o.workers ?? 1;
  const per = Array.from(
    { length: workers },
    (_, w) => Math.floor(((w + 1) * count) / workers) - Math.floor((w * count) / workers),
  );
  const kids = per.map((n) => forkWorker(import.meta.filename, [], n + 256));
  const ids = (
    await Promise.all(
      kids.map((c, w) =>
        ask<string[]>(
          c,
          "ready",
          {
            start: {
              hub,
              count: per[w]!,
              prefix: `${o.prefix ?? "bench"}-w${w}`,
              heartbeatIntervalMs: o.heartbeatIntervalMs ?? 5000,
              concurrency: o.concurrency ?? 50,
              transport: o.transport ?? "ws",
            },
          },
          300_000,
        ),
      ),
    )
  ).flat();
  return {
    ids,
    pids: kids.map((c) => c.pid!),
    stop: async () => {
      await Promise.all(
        kids.map((c) => ask(c, "stopped", { stop: true }, 30_000).catch(() => c.kill("SIGKILL"))),
      );
      await Promise.all(kids.map(exited));
    },
  };
};

/** A store URL for `backend`, and how to remove what it leaves behind. */
export const benchStore = (backend: Backend, tag: string): { url: string; cleanup: () => Promise<void> } => {
  if (backend === "sqlite") {
    const dir = mkdtempSync(join(tmpdir(), `fleetlink-bench-${tag}-`));
    return {
      url: `sqlite:${join(dir, "hub.db")}`,
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const schema = `bench_${tag}_${randomBytes(5).toString("hex")}`;
  const u = new URL(PG_URL);
  u.searchParams.set("schema", schema);
  return { url: u.toString(), cleanup: () => dropSchema(schema) };
};

export const dropSchema = async (schema: string): Promise<void> => {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await c.end();
  }
};

/** True if PostgreSQL answers at PG_URL; prints why not otherwise. */
export const pgReachable = async (): Promise<boolean> => {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  try {
    await c.connect();
    await c.end();
    return true;
  } catch (e) {
    console.log(`postgres unreachable at ${redact(PG_URL)} (${(e as Error).message}): skipping postgres`);
    return false;
  }
};

export const redact = (url: string): string => url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");

/** Resident set size of a process, in KiB (Linux). */
export const rssKb = (pid: number): number => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : Number.NaN;
};

/** CPU time (user + system) a process has used, in ms (Linux). */
export const cpuMs = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ = 100)
};

/** Nearest-rank percentile of ascending `sorted`. */
export const pct = (sorted: readonly number[], p: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;

export const round = (v: number, digits = 2): number => Number(v.toFixed(digits));

/** Prints rows as an aligned Markdown table. */
export const printTable = (rows: Record<string, string | number>[]): void => {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]!);
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(w[i]!)).join(" | ")} |`;
  console.log(line(cols));
  console.log(`|${w.map((n) => "-".repeat(n + 2)).join("|")}|`);
  for (const r of rows) console.log(line(cols.map((c) => String(r[c] ?? ""))));
};

/** Fails the process if the whole benchmark runs past `ms` (it must stop by itself). */
export const hardLimit = (ms: number): void => {
  setTimeout(() => {
    console.error(`benchmark exceeded its ${ms} ms limit; stopping`);
    process.exit(2);
  }, ms).unref();
};
