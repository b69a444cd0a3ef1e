import type { Checkpoints, OpStatus, Roles, TakeoverStatus } from "../../checkpoint/orchestrator.ts";
import { isFleetlinkError } from "../../protocol/errors.ts";
import type { Instruction, NodeRecord, Run, RunStatus } from "../../protocol/types.ts";
import type { Store } from "../../store/store.ts";
import type { Presence, ReplicaPresence } from "../delivery/presence.ts";

/**
 * What the dashboard shows, as one JSON document: the feed sends it on connect and after every change. A feed of
 * a tenant-scoped principal holds only that tenant's nodes, runs and checkpoints, and counts only those.
 */
export interface Snapshot {
  /** The store's time when it was taken, in ms. */
  at: number;
  /** The replica that serves this feed. */
  replica: string;
  /** The tenant this snapshot covers; null: every tenant. */
  tenant: string | null;
  fleet: {
    online: number;
    offline: number;
    pending: number;
    unregistered: number;
    replicas: number;
    /**
     * Instructions leased and not yet answered, fleet-wide; for a tenant, those of its listed runs' newest
     * instructions.
     */
    inflight: number;
    /**
     * Replies stored per second over the last few seconds, fleet-wide; for a tenant, answered instructions of its
     * listed runs per second.
     */
    replyRate: number;
    /** Runs per status (for a tenant: of its newest 1000 runs). */
    runs: Record<RunStatus, number>;
  };
  replicas: ReplicaView[];
  nodes: NodeView[];
  runs: RunSummary[];
  /** Host roles and checkpoint operations of runs that have roles; null: this hub has no checkpoint store. */
  checkpoints: CheckpointView[] | null;
  /** The run the feed was opened for (`?run=`), null if none or unknown. */
  run: RunDetail | null;
}

/**
 * A replica as its presence record says. For a tenant, `nodes` lists only the tenant's nodes, and the replica's
 * counters (which count every tenant's work) are null.
 */
export type ReplicaView = Omit<ReplicaPresence, "inflight" | "runStreams" | "inflightByNode"> & {
  inflight: number | null;
  runStreams: number | null;
};

export interface NodeView {
  id: string;
  tenant: string;
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
  /** ms from the push to the first and to the last reply; null before any. */
  firstReplyMs: number | null;
  lastReplyMs: number | null;
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
/** Runs counted per status for a tenant's snapshot. */
const TENANT_RUN_COUNT = 1000;
/** Run → tenant remembered (a run's tenant never changes), for the checkpoint records of a tenant. */
const MAX_RUN_TENANTS = 10_000;

/** A finished instruction's outcome and its reply's time. */
type Outcome = ({ ok: true } | { ok: false; code: string; message: string }) & { at: number };

/** Builds snapshots from the store and this replica's state. One instance per hub, shared by all its feeds. */
export class SnapshotBuilder {
  private readonly o: Required<Omit<SnapshotOptions, "inflightByNode" | "checkpoints">> &
    Pick<SnapshotOptions, "inflightByNode" | "checkpoints">;
  private readonly outcomes = new Map<string, Outcome>();
  /** Reply-rate samples per tenant ("" for every tenant). */
  private readonly samples = new Map<string, { at: number; replies: number }[]>();
  private readonly runTenants = new Map<string, string>();

  constructor(o: SnapshotOptions) {
    this.o = { ...o, runs: o.runs ?? 20, instructionsPerRun: o.instructionsPerRun ?? 500 };
  }

  /** The part every feed of `tenant` shares (null: every tenant). */
  async base(tenant: string | null = null): Promise<Omit<Snapshot, "run">> {
    const { store } = this.o;
    const scope = tenant === null ? {} : { tenant };
    const [at, stats, records, replicas, runs, counted] = await Promise.all([
      store.now(),
      tenant === null ? store.stats() : null,
      store.listNodes(scope),
      this.o.presence.list(),
      store.listRuns({ limit: this.o.runs, ...scope }),
      tenant === null ? null : store.listRuns({ limit: TENANT_RUN_COUNT, ...scope }),
    ]);
    for (const r of runs) this.rememberTenant(r);
    const nodes = this.nodes(records, replicas, at);
    const count = (s: NodeView["status"]) => nodes.filter((n) => n.status === s).length;
    const summaries = await Promise.all(runs.map((r) => this.summary(r)));
    let inflight: number;
    let replies: number;
    let runCounts: Record<RunStatus, number>;
    if (stats) {
      inflight = stats.instructions.leased;
      replies = stats.replies.pending + stats.replies.claimed;
      runCounts = stats.runs;
    } else {
      inflight = summaries.reduce((n, r) => n + r.leased, 0);
      replies = summaries.reduce((n, r) => n + r.answered, 0);
      runCounts = { pending: 0, running: 0, finished: 0 };
      for (const r of counted ?? []) runCounts[r.status]++;
    }
    const ids = new Set(records.map((n) => n.id));
    return {
      at,
      replica: this.o.replica,
      tenant,
      fleet: {
        online: count("online"),
        offline: count("offline"),
        pending: count("pending"),
        unregistered: count("unregistered"),
        replicas: replicas.length,
        inflight,
        replyRate: this.replyRate(tenant ?? "", replies),
        runs: runCounts,
      },
      // Another tenant's nodes, and counters that add up every tenant's work, are not shown to a tenant.
      // Per-node in-flight counts are in `nodes`, not repeated per replica (they would name other tenants' nodes).
      replicas: replicas.map(({ inflightByNode: _, ...r }) =>
        tenant === null
          ? r
          : { ...r, nodes: r.nodes.filter((n) => ids.has(n)), inflight: null, runStreams: null },
      ),
      nodes,
      runs: summaries.map(({ leased: _, answered: __, ...r }) => r),
      checkpoints: await this.checkpoints(tenant),
    };
  }

  /**
   * One run's calls with each node's state, newest call first; null if the run does not exist or is of another
   * tenant than `tenant` (null: any).
   */
  async run(runId: string, tenant: string | null = null): Promise<RunDetail | null> {
    const { store } = this.o;
    let run: Run;
    try {
      run = await store.getRun(runId);
    } catch (e) {
      if (isFleetlinkError(e, "RUN_NOT_FOUND") || isFleetlinkError(e, "INVALID_ARGUMENT")) return null;
      throw e;
    }
    if (tenant !== null && run.tenant !== tenant) return null;
    const [ins, nodes] = await Promise.all([
      this.instructions(runId),
      store.listNodes({ tenant: run.tenant }),
    ]);
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
        firstReplyMs: null,
        lastReplyMs: null,
      };
      for (const i of [...items].reverse()) {
        const o = this.outcomes.get(i.id);
        if (o) {
          const ms = o.at - first.createdAt;
          view.firstReplyMs = view.firstReplyMs === null ? ms : Math.min(view.firstReplyMs, ms);
          view.lastReplyMs = view.lastReplyMs === null ? ms : Math.max(view.lastReplyMs, ms);
        }
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
    const where = new Map<string, ReplicaPresence>();
    for (const r of replicas) for (const n of r.nodes) where.set(n, r);
    const local = this.o.inflightByNode?.();
    // This replica's own count is current; another's is as its presence record last said (within 5 s).
    const inflight = (id: string): number | null => {
      const r = where.get(id);
      if (!r) return null;
      if (r.id === this.o.replica) return local ? (local.get(id) ?? 0) : null;
      return r.inflightByNode ? (r.inflightByNode[id] ?? 0) : null;
    };
    return records.map((n) => ({
      id: n.id,
      tenant: n.tenant,
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
      replica: where.get(n.id)?.id ?? null,
      inflight: inflight(n.id),
      version: n.agent ? `${n.agent.name}/${n.agent.version}` : null,
      protocol: n.agent?.protocol ?? null,
    }));
  }

  /** A run's counts, and (for a tenant's totals) its leased and answered instructions among those read. */
  private async summary(run: Run): Promise<RunSummary & { leased: number; answered: number }> {
    const ins = await this.instructions(run.id).catch(() => ({ list: [], truncated: false }));
    let ok = 0;
    let error = 0;
    let open = 0;
    let leased = 0;
    let answered = 0;
    for (const i of ins.list) {
      if (i.state === "leased") leased++;
      else if (this.outcomes.has(i.id)) answered++;
    }
    const calls = group(ins.list);
    for (const items of calls.values()) {
      const outs = items.map((i) => this.outcomes.get(i.id));
      if (outs.some((o) => o === undefined)) open++;
      else if (outs.every((o) => o!.ok)) ok++;
      else error++;
    }
    return { ...run, calls: calls.size, ok, error, open, truncated: ins.truncated, leased, answered };
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
        this.remember(
          r.replyTo,
          r.error ? { ok: false, ...r.error, at: r.createdAt } : { ok: true, at: r.createdAt },
        );
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

  private rememberTenant(r: Run): void {
    if (this.runTenants.size >= MAX_RUN_TENANTS) this.runTenants.clear();
    this.runTenants.set(r.id, r.tenant);
  }

  private async tenantOf(runId: string): Promise<string | null> {
    const known = this.runTenants.get(runId);
    if (known !== undefined) return known;
    try {
      const run = await this.o.store.getRun(runId);
      this.rememberTenant(run);
      return run.tenant;
    } catch (e) {
      if (isFleetlinkError(e, "RUN_NOT_FOUND") || isFleetlinkError(e, "INVALID_ARGUMENT")) return null;
      throw e;
    }
  }

  /** Replies per second of one tenant ("" for all), from a running count sampled at each snapshot. */
  private replyRate(key: string, replies: number): number {
    const now = Date.now();
    let samples = this.samples.get(key);
    if (!samples) {
      // Tenants whose feeds closed long ago are forgotten.
      for (const [k, v] of this.samples)
        if (v[v.length - 1]!.at < now - RATE_WINDOW_MS) this.samples.delete(k);
      samples = [];
      this.samples.set(key, samples);
    }
    samples.push({ at: now, replies });
    while (samples.length > 2 && samples[0]!.at < now - RATE_WINDOW_MS) samples.shift();
    const first = samples[0]!;
    const dt = (now - first.at) / 1000;
    // Cleanup deletes replies: a drop is not a negative rate.
    return dt > 0 ? Math.max(0, (replies - first.replies) / dt) : 0;
  }

  private async checkpoints(tenant: string | null): Promise<CheckpointView[] | null> {
    if (!this.o.checkpoints) return null;
    // Runs with host roles, found by the orchestrator's record key (`roles:<runId>`).
    let recs = (await this.o.store.listRecords<Roles>("roles:")).sort((a, b) => b.updatedAt - a.updatedAt);
    if (tenant !== null) {
      const mine: typeof recs = [];
      for (const r of recs) {
        if (mine.length >= MAX_CHECKPOINT_RUNS) break;
        if ((await this.tenantOf(r.value.runId)) === tenant) mine.push(r);
      }
      recs = mine;
    }
    const newest = recs.slice(0, MAX_CHECKPOINT_RUNS);
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
