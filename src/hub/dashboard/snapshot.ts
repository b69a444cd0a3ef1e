import type { Checkpoints, OpStatus, Roles, TakeoverStatus } from "../../checkpoint/orchestrator.ts";
import { isFleetlinkError } from "../../protocol/errors.ts";
import type { Instruction, NodeRecord, Run, RunStatus } from "../../protocol/types.ts";
import type { Store, StoreStats } from "../../store/store.ts";
import type { Presence, ReplicaPresence } from "../delivery/presence.ts";

/** What the dashboard shows, as one JSON document: the feed sends it on connect and after every change. */
export interface Snapshot {
  /** The store's time when it was taken, in ms. */
  at: number;
  /** The replica that serves this feed. */
  replica: string;
  fleet: {
    online: number;
    offline: number;
    pending: number;
    unregistered: number;
    replicas: number;
    /** Instructions leased and not yet answered, fleet-wide. */
    inflight: number;
    /** Replies stored per second over the last few seconds, fleet-wide. */
    replyRate: number;
    runs: Record<RunStatus, number>;
  };
  replicas: ReplicaPresence[];
  nodes: NodeView[];
  runs: RunSummary[];
  /** Host roles and checkpoint operations of runs that have roles; null: this hub has no checkpoint store. */
  checkpoints: CheckpointView[] | null;
  /** The run the feed was opened for (`?run=`), null if none or unknown. */
  run: RunDetail | null;
}

export interface NodeView {
  id: string;
  name: string;
  /** `pending`: waiting for approval (whatever the record's status). */
  status: "online" | "offline" | "pending" | "registered" | "unregistered";
  onlineUntil: number | null;
  /** onlineUntil − 2 × heartbeat interval; null before the first heartbeat. */
  lastHeartbeat: number | null;
  heartbeatIntervalMs: number;
  createdAt: number;
  /** The replica holding its stream, when one says so. */
  replica: string | null;
  /** Its instructions in flight, when its replica reports them per node; else null. */
  inflight: number | null;
  /** The node's software as its last hello named it (`fleetlink-ts/0.1.0`); null if it named none. */
  version: string | null;
  /** The node protocol version of that hello; null if it named no software. */
  protocol: number | null;
}

export type CallNodeState = "pending" | "leased" | "ok" | "error";

export interface CallView {
  /** The instructions' shared groupId (one call of a configuration), or the instruction id if it has none. */
  id: string;
  method: string;
  createdAt: number;
  nodes: { nodeId: string; name: string | null; state: CallNodeState; code?: string; message?: string }[];
  ok: number;
  error: number;
  open: number;
}

export interface RunSummary extends Run {
  calls: number;
  ok: number;
  error: number;
  open: number;
  /** More instructions than were read: the counts cover the newest ones. */
  truncated: boolean;
}

export interface RunDetail {
  run: Run;
  calls: CallView[];
  truncated: boolean;
  checkpoint: CheckpointView | null;
}

export interface CheckpointView {
  runId: string;
  roles: Roles;
  push: OpStatus;
  pull: OpStatus;
  takeovers: TakeoverStatus[];
}

export interface SnapshotOptions {
  store: Store;
  replica: string;
  presence: Presence;
  checkpoints: Checkpoints | undefined;
  /** This replica's in-flight instructions per node, if it can say. */
  inflightByNode?: () => ReadonlyMap<string, number>;
  /** Runs listed. (Default: 20) */
  runs?: number;
  /** Instructions read per run. (Default: 500) */
  instructionsPerRun?: number;
}

/** Outcomes remembered per instruction (a finished one never changes), so each reply is read once. */
const MAX_OUTCOMES = 50_000;
/** Reply-rate window, in ms. */
const RATE_WINDOW_MS = 10_000;
/** Runs with host roles whose checkpoints are shown. */
const MAX_CHECKPOINT_RUNS = 10;

type Outcome = { ok: true } | { ok: false; code: string; message: string };

/** Builds snapshots from the store and this replica's state. One instance per hub, shared by all its feeds. */
export class SnapshotBuilder {
  private readonly o: Required<Omit<SnapshotOptions, "inflightByNode" | "checkpoints">> &
    Pick<SnapshotOptions, "inflightByNode" | "checkpoints">;
  private readonly outcomes = new Map<string, Outcome>();
  private readonly samples: { at: number; replies: number }[] = [];

  constructor(o: SnapshotOptions) {
    this.o = { ...o, runs: o.runs ?? 20, instructionsPerRun: o.instructionsPerRun ?? 500 };
  }

  /** The part every feed shares. */
  async base(): Promise<Omit<Snapshot, "run">> {
    const { store } = this.o;
    const [at, stats, records, replicas, runs] = await Promise.all([
      store.now(),
      store.stats(),
      store.listNodes(),
      this.o.presence.list(),
      store.listRuns({ limit: this.o.runs }),
    ]);
    const nodes = this.nodes(records, replicas, at);
    const count = (s: NodeView["status"]) => nodes.filter((n) => n.status === s).length;
    const summaries = await Promise.all(runs.map((r) => this.summary(r)));
    return {
      at,
      replica: this.o.replica,
      fleet: {
        online: count("online"),
        offline: count("offline"),
        pending: count("pending"),
        unregistered: count("unregistered"),
        replicas: replicas.length,
        inflight: stats.instructions.leased,
        replyRate: this.replyRate(stats),
        runs: stats.runs,
      },
      replicas,
      nodes,
      runs: summaries,
      checkpoints: await this.checkpoints(),
    };
  }

  /** One run's calls with each node's state, newest call first; null if the run does not exist. */
  async run(runId: string): Promise<RunDetail | null> {
    const { store } = this.o;
    let run: Run;
    try {
      run = await store.getRun(runId);
    } catch (e) {
      if (isFleetlinkError(e, "RUN_NOT_FOUND") || isFleetlinkError(e, "INVALID_ARGUMENT")) return null;
      throw e;
    }
    const [ins, nodes] = await Promise.all([this.instructions(runId), store.listNodes()]);
    const names = new Map(nodes.map((n) => [n.id, n.name]));
    const calls = [...group(ins.list).values()].map((items) => {
      const first = items[items.length - 1]!;
      const view: CallView = {
        id: first.groupId ?? first.id,
        method: first.method,
        createdAt: first.createdAt,
        nodes: [],
        ok: 0,
        error: 0,
        open: 0,
      };
      for (const i of [...items].reverse()) {
        const o = this.outcomes.get(i.id);
        const state: CallNodeState = o
          ? o.ok
            ? "ok"
            : "error"
          : i.state === "leased"
            ? "leased"
            : "pending";
        view.nodes.push({
          nodeId: i.dst,
          name: names.get(i.dst) ?? null,
          state,
          ...(o && !o.ok ? { code: o.code, message: o.message } : {}),
        });
        if (state === "ok") view.ok++;
        else if (state === "error") view.error++;
        else view.open++;
      }
      return view;
    });
    const checkpoint = this.o.checkpoints ? await this.checkpoint(runId).catch(() => null) : null;
    return { run, calls, truncated: ins.truncated, checkpoint };
  }

  private nodes(records: NodeRecord[], replicas: ReplicaPresence[], now: number): NodeView[] {
    const where = new Map<string, string>();
    for (const r of replicas) for (const n of r.nodes) where.set(n, r.id);
    const local = this.o.inflightByNode?.();
    return records.map((n) => ({
      id: n.id,
      name: n.name,
      status: !n.approved
        ? "pending"
        : n.status === "online" && (n.onlineUntil ?? 0) <= now
          ? "offline" // silent, the sweep has not marked it yet
          : n.status,
      onlineUntil: n.onlineUntil,
      lastHeartbeat: n.onlineUntil === null ? null : n.onlineUntil - 2 * n.heartbeatIntervalMs,
      heartbeatIntervalMs: n.heartbeatIntervalMs,
      createdAt: n.createdAt,
      replica: where.get(n.id) ?? null,
      inflight: where.get(n.id) === this.o.replica && local ? (local.get(n.id) ?? 0) : null,
      version: n.agent ? `${n.agent.name}/${n.agent.version}` : null,
      protocol: n.agent?.protocol ?? null,
    }));
  }

  private async summary(run: Run): Promise<RunSummary> {
    const ins = await this.instructions(run.id).catch(() => ({ list: [], truncated: false }));
    let ok = 0;
    let error = 0;
    let open = 0;
    const calls = group(ins.list);
    for (const items of calls.values()) {
      const outs = items.map((i) => this.outcomes.get(i.id));
      if (outs.some((o) => o === undefined)) open++;
      else if (outs.every((o) => o!.ok)) ok++;
      else error++;
    }
    return { ...run, calls: calls.size, ok, error, open, truncated: ins.truncated };
  }

  /** A run's newest instructions, with the outcome of each finished one remembered. */
  private async instructions(runId: string): Promise<{ list: Instruction[]; truncated: boolean }> {
    const limit = this.o.instructionsPerRun;
    const list = await this.o.store.listInstructions(runId, { limit: limit + 1 });
    const truncated = list.length > limit;
    if (truncated) list.length = limit;
    const unknown = list.filter((i) => i.state === "done" && !this.outcomes.has(i.id)).map((i) => i.id);
    if (unknown.length > 0) {
      for (const r of await this.o.store.getReplies(runId, unknown))
        this.remember(r.replyTo, r.error ? { ok: false, ...r.error } : { ok: true });
    }
    return { list, truncated };
  }

  private remember(id: string, o: Outcome): void {
    if (this.outcomes.size >= MAX_OUTCOMES) {
      // Forget the oldest half: they belong to runs long scrolled out of the list.
      let n = MAX_OUTCOMES / 2;
      for (const k of this.outcomes.keys()) {
        if (n-- <= 0) break;
        this.outcomes.delete(k);
      }
    }
    this.outcomes.set(id, o);
  }

  private replyRate(stats: StoreStats): number {
    const now = Date.now();
    const replies = stats.replies.pending + stats.replies.claimed;
    this.samples.push({ at: now, replies });
    while (this.samples.length > 2 && this.samples[0]!.at < now - RATE_WINDOW_MS) this.samples.shift();
    const first = this.samples[0]!;
    const dt = (now - first.at) / 1000;
    // Cleanup deletes replies: a drop is not a negative rate.
    return dt > 0 ? Math.max(0, (replies - first.replies) / dt) : 0;
  }

  private async checkpoints(): Promise<CheckpointView[] | null> {
    if (!this.o.checkpoints) return null;
    // Runs with host roles, found by the orchestrator's record key (`roles:<runId>`).
    const recs = await this.o.store.listRecords<Roles>("roles:");
    const newest = recs.sort((a, b) => b.updatedAt - a.updatedAt).slice(0, MAX_CHECKPOINT_RUNS);
    const views = await Promise.all(newest.map((r) => this.checkpoint(r.value.runId).catch(() => null)));
    return views.filter((v): v is CheckpointView => v !== null);
  }

  private async checkpoint(runId: string): Promise<CheckpointView | null> {
    const cp = this.o.checkpoints!;
    const roles = await cp.roles(runId);
    if (!roles) return null;
    const [push, pull, takeovers] = await Promise.all([
      cp.status(runId, "push"),
      cp.status(runId, "pull"),
      cp.takeoverStatus(runId),
    ]);
    return { runId, roles, push, pull, takeovers };
  }
}

/** Instructions (newest first) grouped into calls by groupId, newest call first. */
const group = (list: Instruction[]): Map<string, Instruction[]> => {
  const calls = new Map<string, Instruction[]>();
  for (const i of list) {
    const k = i.groupId ?? i.id;
    const g = calls.get(k);
    if (g) g.push(i);
    else calls.set(k, [i]);
  }
  return calls;
};
