import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdirSync, readdirSync, readFileSync, type WriteStream } from "node:fs";
import { join } from "node:path";

/** What the node under test is given, in its environment (docs/conformance.md). */
export interface NodeEnv {
  /** FLEETLINK_HUB: comma-separated hub URLs. */
  hubs: string[];
  /** FLEETLINK_ENROLL_TOKEN. */
  enrollToken: string;
  /** FLEETLINK_NODE_NAME. */
  name: string;
  /** FLEETLINK_WORK_DIR: the node's own directory (identity, calls.log). */
  workDir: string;
}

/** Node processes not yet ended: killed with their groups if the kit's own process exits first (Ctrl-C). */
const live = new Set<NodeProcess>();
let exitHook = false;
const killLeftovers = () => {
  for (const p of live) p.kill();
};

/** Characters of the node's stderr a verdict quotes. */
const TAIL_CHARS = 1500;

/** One `start <instructionId> <method>` line of calls.log: a handler run the node began. */
export interface HandlerStart {
  instructionId: string;
  method: string;
}

/**
 * The node under test as an OS process: `sh -c <command>` in a process group of its own (so a signal reaches
 * the node behind any shell), its output kept in the work dir (node.log) with a tail for verdicts.
 */
export class NodeProcess {
  readonly child: ChildProcess;
  readonly env: NodeEnv;
  /** Settles when the process ends, with its exit code (null: killed by a signal). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private stderr = "";
  private readonly log: WriteStream;

  constructor(command: string, env: NodeEnv) {
    this.env = env;
    mkdirSync(env.workDir, { recursive: true });
    this.log = createWriteStream(join(env.workDir, "node.log"), { flags: "a" });
    // The log is for people; a work dir removed under it (a finished kit, a test's clean-up) must not end the
    // process. Verdicts use the stderr tail kept in memory.
    this.log.on("error", () => {});
    this.child = spawn("sh", ["-c", command], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        FLEETLINK_HUB: env.hubs.join(","),
        FLEETLINK_ENROLL_TOKEN: env.enrollToken,
        FLEETLINK_NODE_NAME: env.name,
        FLEETLINK_WORK_DIR: env.workDir,
      },
    });
    live.add(this);
    if (!exitHook) {
      exitHook = true;
      process.on("exit", killLeftovers);
    }
    this.child.stdout!.on("data", (d: Buffer) => this.log.write(d));
    this.child.stderr!.on("data", (d: Buffer) => {
      this.log.write(d);
      this.stderr = (this.stderr + d.toString()).slice(-TAIL_CHARS * 4);
    });
    this.exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      this.child.once("error", (e) => {
        this.stderr += `\ncannot start sh: ${e.message}`;
        this.exit = { code: 127, signal: null };
        resolve(this.exit);
      });
      this.child.once("exit", (code, signal) => {
        this.exit ??= { code, signal };
        resolve(this.exit);
      });
    }).finally(() => {
      live.delete(this);
    });
    // After the process's output is drained ("close" comes after "exit").
    this.child.once("close", () => this.log.end());
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** The end of what the node wrote to stderr. */
  stderrTail(): string {
    const t = this.stderr.trim();
    return t.length > TAIL_CHARS ? `…${t.slice(-TAIL_CHARS)}` : t;
  }

  /** How the process ended, in words, with its stderr tail. */
  describeExit(): string {
    const e = this.exit;
    const how = !e ? "is running" : e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
    const tail = this.stderrTail();
    return `the node process ${how}${tail ? `; its stderr ends:\n${indent(tail)}` : " (no stderr)"}`;
  }

  /**
   * Sends a signal to the node: to the shell's children (dash does not exec the command, and a shell killed by
   * SIGTERM would end with 143 while the node behind it still stops gracefully), or to the shell itself when
   * it has none (it exec'd the command). The shell then ends with the node's own exit code.
   */
  signal(sig: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (!this.running || pid === undefined) return;
    const kids = childrenOf(pid);
    for (const p of kids.length > 0 ? kids : [pid])
      try {
        process.kill(p, sig);
      } catch {
        // Already gone.
      }
  }

  /** SIGKILL to the whole process group, at once (synchronous: usable while the kit's process exits). */
  kill(): void {
    this.signalGroup("SIGKILL");
  }

  /** Sends a signal to the node's whole process group (the shell, the node, anything it started). */
  private signalGroup(sig: NodeJS.Signals): void {
    if (this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, sig);
    } catch {
      // Already gone.
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it ended. */
  async stop(graceMs = 3000): Promise<void> {
    if (!this.running) return;
    this.signal("SIGTERM");
    const t = setTimeout(() => this.signalGroup("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(t);
    // The group may hold more than the shell's child (a node that forks): end them too.
    this.signalGroup("SIGKILL");
    this.log.end();
  }

  /** Every handler start the node recorded in calls.log so far. */
  starts(): HandlerStart[] {
    let text: string;
    try {
      text = readFileSync(join(this.env.workDir, "calls.log"), "utf8");
    } catch {
      return [];
    }
    return text
      .split("\n")
      .map((l) => l.trim().split(/\s+/))
      .filter((p) => p[0] === "start" && p.length >= 3)
      .map((p) => ({ instructionId: p[1]!, method: p[2]! }));
  }

  /** How many times the node started a handler for this instruction. */
  startsOf(instructionId: string): number {
    return this.starts().filter((s) => s.instructionId === instructionId).length;
  }
}

/** The processes whose parent is `pid` (Linux /proc; elsewhere none, and the shell itself is signalled). */
const childrenOf = (pid: number): number[] => {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      // "pid (comm) state ppid …": comm may hold spaces and parentheses, so read after the last ")".
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      // It ended meanwhile.
    }
  }
  return out;
};

const indent = (s: string) =>
  s
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
