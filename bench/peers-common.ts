// Shared pieces of bench:peers: the System interface every contestant implements, the worker-process protocol
// (bench/peers-worker.ts), CPU readers for any process (/proc/<pid>/stat) and the pending-reply map the peers'
// coordinator sides use to match replies to requests.
import type { ChildProcess } from "node:child_process";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { ask, exited, forkWorker } from "./fleet-worker.ts";

export const PAYLOAD = { op: "ping", data: "x".repeat(64) };
/** Per request; a request that takes longer fails the benchmark rather than hanging it. */
export const CALL_TIMEOUT_MS = 10_000;

/** One contestant, driven by bench/peers.ts; the workers live in another process. */
export interface System {
  /** Id used by BENCH_PEERS_ONLY and the JSON, e.g. "jetstream". */
  readonly name: string;
  /** Short durability tag for the tables. */
  readonly durability: string;
  /** What the durability means, one sentence, for the parameters block. */
  readonly durabilityNote: string;
  /** Server and client versions, for the parameters block. */
  readonly version: string;
  /** The hub process (fleetlink only). */
  hubPid(): number | undefined;
  /** Processes in the middle that this system's calls cost CPU in: hub, relay, broker, database. */
  middlePids(): number[];
  /** The worker process(es). */
  workerPids(): number[];
  /** Leaves exactly `k` workers consuming (fleetlink: `k` connected nodes). */
  setWorkers(k: number): Promise<void>;
  /** One request, resolved when its one reply is back here; `i` spreads addressed calls over the workers. */
  call(i: number): Promise<void>;
  /** Three requests to three workers, resolved when all three replies are back. */
  fanout(): Promise<void>;
  close(): Promise<void>;
}

// ---- CPU ----

let clkTck: number | undefined;
/** USER_HZ, the unit of utime/stime in /proc/<pid>/stat (`getconf CLK_TCK`, usually 100). */
export const clockTicks = (): number => {
  if (clkTck === undefined) {
    const v = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    clkTck = Number.isFinite(v) && v > 0 ? v : 100;
  }
  return clkTck;
};

/** CPU time (utime + stime) of `pid` in ms; NaN for a process that is gone. */
export const procCpuMs = (pid: number): number => {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return Number.NaN;
  }
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / clockTicks();
};

/** CPU used by `pids` from now until `end()`, in ms; a process gone by then counts for nothing. */
export const cpuMeter = (pids: readonly number[]) => {
  const before = pids.map(procCpuMs);
  return {
    end(): number {
      let ms = 0;
      pids.forEach((p, i) => {
        const d = procCpuMs(p) - before[i]!;
        if (Number.isFinite(d)) ms += d;
      });
      return ms;
    },
  };
};

/** Pids whose /proc/<pid>/comm is `comm` (e.g. "postgres" gives the postmaster and every backend). */
export const pidsByComm = (comm: string): number[] => {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, "utf8").trim() === comm) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
};

/** `pidsByComm`, failing loudly when the server is not a local process. */
export const serverPids = (comm: string, what: string): number[] => {
  const p = pidsByComm(comm);
  if (p.length === 0) throw new Error(`${what}: no local process named ${comm} (its CPU cannot be measured)`);
  return p;
};

// ---- replies ----

/** Requests waiting for their reply, by correlation id; each times out after CALL_TIMEOUT_MS. */
export class Waiting {
  private readonly map = new Map<string, { res: () => void; rej: (e: Error) => void; t: NodeJS.Timeout }>();
  private seq = 0;
  private readonly what: string;
  /** Replies that matched no waiting request (duplicates, or after a timeout). */
  unknown = 0;

  constructor(what: string) {
    this.what = what;
  }

  /** A fresh correlation id and the promise its reply resolves. */
  next(): { id: string; reply: Promise<void> } {
    const id = String(this.seq++);
    const reply = new Promise<void>((res, rej) => {
      const t = setTimeout(() => {
        this.map.delete(id);
        rej(new Error(`${this.what}: no reply to request ${id} within ${CALL_TIMEOUT_MS} ms`));
      }, CALL_TIMEOUT_MS);
      this.map.set(id, { res, rej, t });
    });
    return { id, reply };
  }

  /** Settles the request `id`; unknown ids (a duplicate reply) are counted. */
  resolve(id: string): void {
    const w = this.map.get(id);
    if (!w) {
      this.unknown++;
      return;
    }
    this.map.delete(id);
    clearTimeout(w.t);
    w.res();
  }

  failAll(e: Error): void {
    for (const w of this.map.values()) {
      clearTimeout(w.t);
      w.rej(e);
    }
    this.map.clear();
  }
}

// ---- worker process ----

const WORKER = new URL("./peers-worker.ts", import.meta.url).pathname;

export interface PeerWorker {
  pid: number;
  setWorkers(k: number): Promise<void>;
  stop(): Promise<void>;
}

/** Forks bench/peers-worker.ts for `role` with `spec`; resolves once it is set up (no consumers yet). */
/**
 * The System of a peer that has no hub: its middle processes (broker, relay, database) are `middle`, its
 * workers one peer-worker process, and a fan-out is three calls at once.
 */
export const peerSystem = (o: {
  name: string;
  durability: string;
  durabilityNote: string;
  version: string;
  middle: () => number[];
  workers: PeerWorker;
  call: () => Promise<void>;
  close: () => Promise<void>;
}): System => ({
  name: o.name,
  durability: o.durability,
  durabilityNote: o.durabilityNote,
  version: o.version,
  hubPid: () => undefined,
  middlePids: o.middle,
  workerPids: () => [o.workers.pid],
  setWorkers: (k) => o.workers.setWorkers(k),
  call: () => o.call(),
  fanout: async () => {
    await Promise.all([o.call(), o.call(), o.call()]);
  },
  close: o.close,
});

export const startPeerWorker = async (role: string, spec: unknown): Promise<PeerWorker> => {
  const child: ChildProcess = forkWorker(WORKER, [role], 1024);
  try {
    await ask(child, "ready", { start: spec }, 60_000);
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
  return {
    pid: child.pid!,
    setWorkers: async (k) => {
      await ask(child, "workers", { workers: k }, 120_000);
    },
    stop: async () => {
      await ask(child, "stopped", { stop: true }, 15_000).catch(() => child.kill("SIGKILL"));
      await exited(child);
    },
  };
};

/** The worker side of one system, inside bench/peers-worker.ts. */
export interface WorkerSide {
  /** Stops the current consumers and starts `k` new ones. */
  setWorkers(k: number): Promise<void>;
  close(): Promise<void>;
}

export const median = (xs: readonly number[]): number => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export const pkgVersion = (name: string): string =>
  (
    JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), "utf8")) as {
      version: string;
    }
  ).version;
