import type { Store } from "../../store/store.ts";
import type { Logger } from "../../stream/channel.ts";

/** What one hub replica says about itself in the shared store, so every replica's dashboard sees the fleet. */
export interface ReplicaPresence {
  id: string;
  startedAt: number;
  /** When this replica last wrote the record (its own clock). */
  updatedAt: number;
  /** Nodes whose stream is on this replica (at most MAX_LISTED). */
  nodes: string[];
  /** Instructions delivered from this replica and not yet answered. */
  inflight: number;
  /** Coordinator reply streams on this replica. */
  runStreams: number;
  /** In-flight instructions of each listed node that has any (absent in records of older replicas). */
  inflightByNode?: Record<string, number>;
  /** Set by a replica that closed cleanly: it is gone at once, not after the silence window. */
  closedAt?: number;
  /** Where the replica listens (`http://host:port`, the host's name for a wildcard bind); absent before listen. */
  address?: string;
}

export interface PresenceOptions {
  store: Store;
  id: string;
  /** This replica's connected nodes and in-flight count. */
  local: () => {
    nodes: string[];
    inflight: number;
    runStreams: number;
    inflightByNode?: ReadonlyMap<string, number>;
    address?: string;
  };
  log: Logger;
  /** Called when a node connected here or left (checked every second). */
  onLocalChange?: () => void;
  /** How often the record is rewritten, in ms. A replica silent for 3 × this is no longer listed. (Default: 5000) */
  intervalMs?: number;
}

const PREFIX = "replica:";
/** Node ids listed per replica: a record stays a small document even on a replica with huge fleets. */
const MAX_LISTED = 10_000;
/** Longest a closing replica waits to mark its record closed, in ms. */
const STOP_WAIT_MS = 1000;
/** How often the connected set is compared with the last one written, in ms. */
const CHECK_MS = 1000;

/**
 * Each replica keeps one record `replica:<id>` up to date: every `intervalMs`, and within a second of a node
 * connecting or leaving. Records are never deleted (the store has no delete for records); a closed replica
 * marks its own, a crashed one is hidden once silent. One record per replica start: a few hundred bytes each.
 */
export class Presence {
  private readonly o: Required<Omit<PresenceOptions, "onLocalChange">> &
    Pick<PresenceOptions, "onLocalChange">;
  private readonly startedAt = Date.now();
  private timer: ReturnType<typeof setInterval> | undefined;
  private lastKey = "";
  private lastWrite = 0;
  private version: number | null = null;
  private writing: Promise<void> = Promise.resolve();
  /** Writes not finished: a slow store gets no second one queued behind the first. */
  private pending = 0;

  constructor(o: PresenceOptions) {
    this.o = { ...o, intervalMs: o.intervalMs ?? 5000 };
  }

  start(): void {
    void this.publish();
    this.timer = setInterval(
      () => {
        const moved = this.key() !== this.lastKey;
        const due = moved || Date.now() - this.lastWrite >= this.o.intervalMs;
        if (due && this.pending === 0) void this.publish();
        if (moved) this.o.onLocalChange?.();
      },
      Math.min(CHECK_MS, this.o.intervalMs),
    );
    this.timer.unref();
  }

  /** Marks the record closed; waits for that at most STOP_WAIT_MS, so a hung store never holds up a hub's close. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.publish(Date.now()),
      new Promise((r) => {
        timer = setTimeout(r, STOP_WAIT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  /** The replicas that wrote within 3 × the interval and did not close, this one included. */
  async list(): Promise<ReplicaPresence[]> {
    const recs = await this.o.store.listRecords<ReplicaPresence>(PREFIX);
    const cutoff = Date.now() - 3 * this.o.intervalMs;
    const others = recs
      .map((r) => r.value)
      .filter((p) => p.id !== this.o.id && p.closedAt === undefined && p.updatedAt >= cutoff);
    // This replica as it is now, not as last written (a node that just connected is shown at once).
    return [this.current(), ...others].sort((a, b) => a.startedAt - b.startedAt);
  }

  private current(): ReplicaPresence {
    const l = this.o.local();
    const nodes = l.nodes.slice(0, MAX_LISTED);
    const byNode: Record<string, number> = {};
    for (const n of nodes) {
      const k = l.inflightByNode?.get(n) ?? 0;
      if (k > 0) byNode[n] = k;
    }
    return {
      id: this.o.id,
      startedAt: this.startedAt,
      updatedAt: Date.now(),
      nodes,
      inflight: l.inflight,
      runStreams: l.runStreams,
      ...(l.inflightByNode ? { inflightByNode: byNode } : {}),
      ...(l.address ? { address: l.address } : {}),
    };
  }

  private key(): string {
    return this.o.local().nodes.slice(0, MAX_LISTED).join(",");
  }

  private publish(closedAt?: number): Promise<void> {
    // Writes are chained, so this replica's own compare-and-set never races itself.
    this.pending++;
    this.writing = this.writing.then(async () => {
      const value: ReplicaPresence = { ...this.current(), ...(closedAt === undefined ? {} : { closedAt }) };
      this.lastKey = value.nodes.join(",");
      this.lastWrite = value.updatedAt;
      try {
        this.version = (await this.o.store.putRecord(PREFIX + this.o.id, value, this.version)).version;
      } catch (e) {
        // Lost track of the version (a store that failed mid-write): read it back and try next time.
        const cur = await this.o.store.getRecord(PREFIX + this.o.id).catch(() => null);
        this.version = cur?.version ?? null;
        this.o.log.warn({ err: String(e) }, "replica presence not written");
      } finally {
        this.pending--;
      }
    });
    return this.writing;
  }
}
