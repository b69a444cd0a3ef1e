import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { join } from "node:path";
import { lineTransport } from "../../stream/lines.ts";
import type { Transport } from "../../stream/transport.ts";
import { type Message, parseMessage } from "../protocol.ts";
import type { Partition } from "./nemesis.ts";

export interface HarnessError {
  node: string;
  kind: "malformed-output" | "crash" | "init-timeout" | "topology-timeout" | "unknown-destination";
  detail: string;
  time: number;
}

/**
 * Process groups of node processes still alive in this process. `--bin` is a shell command, so the child is a
 * shell that may have started the node as its own child: each one leads its own group (detached), and the
 * whole group is signalled, never just the shell. Whatever is left when this process exits is killed then.
 */
const liveGroups = new Set<number>();
let exitHookInstalled = false;
const killGroup = (pgid: number, sig: NodeJS.Signals) => {
  try {
    process.kill(-pgid, sig);
  } catch {
    // ESRCH: the group is gone already.
  }
};

/** One node process speaking the protocol on stdin/stdout; its stderr goes to `<dir>/<id>.log`. */
class NodeProcess {
  readonly child: ChildProcess;
  readonly transport: Transport;
  private readonly log: WriteStream;
  /** The shell exited. */
  private readonly exited: Promise<void>;
  /** Its stdout and stderr closed too: nothing it started holds them any more. */
  private readonly closed: Promise<void>;
  expectedExit = false;
  private stopping: Promise<void> | undefined;

  constructor(
    id: string,
    bin: string,
    dir: string,
    onLine: (line: string) => void,
    onExit: (detail: string) => void,
  ) {
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on("exit", () => {
        for (const g of liveGroups) killGroup(g, "SIGKILL");
      });
    }
    this.log = createWriteStream(join(dir, `${id}.log`));
    this.child = spawn(bin, {
      shell: true,
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, MAELSTROM_NODE: id },
    });
    const pgid = this.child.pid;
    if (pgid !== undefined) liveGroups.add(pgid);
    this.exited = new Promise((res) => {
      this.child.once("exit", () => res());
      // Spawning failed: no process, no exit event.
      this.child.once("error", (e) => {
        if (this.child.pid === undefined) res();
        if (!this.expectedExit) onExit(`could not start: ${e.message}`);
      });
    });
    this.closed = new Promise((res) => this.child.once("close", () => res()));
    this.log.on("error", () => {});
    this.child.stderr!.pipe(this.log);
    this.child.stdin!.on("error", () => {});
    this.transport = lineTransport({
      onData: (cb) => this.child.stdout!.on("data", (d: Buffer) => cb(d.toString())),
      onEnd: (cb) => this.child.stdout!.on("end", cb),
      write: (s) => {
        if (this.child.stdin!.writable) this.child.stdin!.write(s);
      },
      end: () => this.child.stdin!.end(),
    });
    this.transport.onMessage(onLine);
    this.child.on("exit", (code, sig) => {
      if (!this.expectedExit) onExit(`exited with ${code ?? sig}`);
    });
  }

  /**
   * SIGTERM to the node's process group, SIGKILL to the group after 2 s or as soon as the shell has exited
   * (for whatever it left behind); resolves once the group is gone and the node's pipes are closed.
   */
  stop(): Promise<void> {
    this.stopping ??= this.end();
    return this.stopping;
  }

  private async end(): Promise<void> {
    this.expectedExit = true;
    const pgid = this.child.pid;
    if (pgid === undefined) return this.exited;
    killGroup(pgid, "SIGTERM");
    await within(this.exited, 2000);
    killGroup(pgid, "SIGKILL");
    // A process that left the group (setsid) could hold the pipes forever: not waited for beyond 2 s.
    await within(this.closed, 2000);
    liveGroups.delete(pgid);
  }
}

const within = async (p: Promise<void>, ms: number) => {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise((r) => (t = setTimeout(r, ms)))]);
  clearTimeout(t);
};

/**
 * The simulated network: every message between nodes and clients passes through here, delayed by the
 * latency, and messages between nodes on different sides of the current partition are dropped.
 */
export class Network {
  readonly nodes = new Map<string, NodeProcess>();
  private readonly clients = new Map<string, (m: Message) => void>();
  readonly errors: HarnessError[] = [];
  serverMsgs = 0;
  clientMsgs = 0;
  dropped = 0;
  private partition: Partition | null = null;
  private readonly start = Date.now();
  private readonly latency: () => number;

  constructor(latency: () => number) {
    this.latency = latency;
  }

  now(): number {
    return Date.now() - this.start;
  }

  spawnNode(id: string, bin: string, dir: string): void {
    this.nodes.set(
      id,
      new NodeProcess(
        id,
        bin,
        dir,
        (line) => this.fromNode(id, line),
        (detail) => this.errors.push({ node: id, kind: "crash", detail, time: this.now() }),
      ),
    );
  }

  addClient(id: string, onMessage: (m: Message) => void): void {
    this.clients.set(id, onMessage);
  }

  setPartition(p: Partition | null): void {
    this.partition = p;
  }

  private fromNode(id: string, line: string): void {
    const parsed = parseMessage(line);
    if ("error" in parsed) {
      this.errors.push({
        node: id,
        kind: "malformed-output",
        detail: `${parsed.error}: ${line.slice(0, 200)}`,
        time: this.now(),
      });
      return;
    }
    this.send(parsed.msg);
  }

  /** Routes one message (from a node or a client). */
  send(m: Message): void {
    const serverToServer = this.nodes.has(m.src) && this.nodes.has(m.dest);
    if (serverToServer) this.serverMsgs++;
    else this.clientMsgs++;
    if (!this.nodes.has(m.dest) && !this.clients.has(m.dest)) {
      this.errors.push({
        node: m.src,
        kind: "unknown-destination",
        detail: `message to ${m.dest}`,
        time: this.now(),
      });
      return;
    }
    // Partitions cut links between nodes; clients always reach their node (as in Maelstrom).
    if (serverToServer && this.partition && !this.partition.allows(m.src, m.dest)) {
      this.dropped++;
      return;
    }
    const deliver = () => {
      const node = this.nodes.get(m.dest);
      if (node) node.transport.send(JSON.stringify(m));
      else this.clients.get(m.dest)?.(m);
    };
    const d = this.latency();
    if (d <= 0) queueMicrotask(deliver);
    else setTimeout(deliver, d);
  }

  /** Ends every node process (and anything it started); safe to call more than once. */
  async stop(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((n) => n.stop()));
  }
}
