import { FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import { newId } from "../protocol/ids.ts";
import type { Store, StoredRecord } from "../store/store.ts";
import type { Logger } from "../stream/channel.ts";
import { ASSIGN_TIMEOUT_MS, assignCall } from "./host-calls.ts";
import { checkPart, findCheckpoint, listCheckpoints, type Manifest } from "./layout.ts";
import { type CallResult, type NodeCall, NodeCalls } from "./node-calls.ts";
import type { ObjectStore } from "./object-store.ts";
import {
  type CheckpointObserver,
  type HostStatus,
  type OpContext,
  type OpKind,
  type OpStatus,
  opKey,
} from "./op-record.ts";
import { restoresFrom, runPull } from "./pull.ts";
import { runPush } from "./push.ts";
import {
  checkDistinct,
  checkWriters,
  diffRoles,
  type HostRole,
  type RoleChange,
  type Roles,
} from "./roles.ts";
import {
  DEFAULT_TAKEOVER_RETRY,
  putTakeover,
  TakeoverMonitor,
  type TakeoverRetry,
  type TakeoverStatus,
  takeoverStatus,
} from "./takeover.ts";

export type { CheckpointObserver, HostStatus, OpKind, OpStatus } from "./op-record.ts";
export type { HostRole, RoleChange, Roles } from "./roles.ts";
export type { TakeoverRetry, TakeoverStatus } from "./takeover.ts";

export interface CheckpointsOptions {
  store: Store;
  objects: ObjectStore;
  /** Complete checkpoints kept per run. (Default: 3) */
  keep?: number;
  /** Longest a host may take to push or pull, in ms. (Default: 600000) */
  transferTimeoutMs?: number;
  /** An in-progress operation not updated for this long is considered abandoned (its replica died). (Default: 60000) */
  staleMs?: number;
  /** Wakes this replica's node streams after instructions were pushed. */
  changed: () => void;
  log: Logger;
  /** Told when hosts and operations finish (metrics). (Default: none) */
  observe?: CheckpointObserver;
}

const rolesKey = (runId: string) => `roles:${runId}`;

/**
 * Coordinated checkpoints, driven by a hub replica: every host of a run pushes its part under one checkpoint
 * id, the manifest is written last; pulls run in the background on every host (each replies when restored),
 * with per-host status; standbys take over hosts that go silent. Operation status and host roles live in the
 * shared store (versioned records, compare-and-set), so any replica answers for any run and two replicas never
 * run the same operation.
 */
export class Checkpoints {
  private readonly o: Required<
    Omit<CheckpointsOptions, "keep" | "transferTimeoutMs" | "staleMs" | "observe">
  > & {
    observe?: CheckpointObserver;
    keep: number;
    transferTimeoutMs: number;
    staleMs: number;
  };
  private readonly monitor: TakeoverMonitor;
  private readonly calls: NodeCalls;

  constructor(o: CheckpointsOptions) {
    this.o = { keep: 3, transferTimeoutMs: 600_000, staleMs: 60_000, ...o };
    this.calls = new NodeCalls({ store: o.store, changed: o.changed, log: o.log });
    this.monitor = new TakeoverMonitor({
      store: this.o.store,
      activate: (runId, hostIdx) => this.activate(runId, hostIdx),
      log: this.o.log,
      abandonedMs: this.o.transferTimeoutMs + this.o.staleMs,
    });
  }

  /**
   * Sends one instruction per call through the store and waits for their replies (see NodeCalls: fed by the
   * store's change notifications, never by polling). A call unanswered after its TTL fails NODE_UNAVAILABLE
   * (its node is offline) or MESSAGE_EXPIRED; `onResult` is told of each result as it arrives.
   */
  callNodes(
    runId: string,
    calls: NodeCall[],
    timeoutMs: number,
    onResult?: (index: number, r: CallResult) => void,
  ): Promise<CallResult[]> {
    return this.calls.call(runId, calls, timeoutMs, onResult);
  }

  /** What a push or pull is handed. */
  private get context(): OpContext {
    const { store, objects, log, observe, keep, transferTimeoutMs } = this.o;
    return {
      store,
      objects,
      log,
      observe,
      keep,
      transferTimeoutMs,
      callNodes: (...a) => this.callNodes(...a),
    };
  }

  /** The run's host roles, null if none are assigned; RUN_NOT_FOUND for an unknown run. */
  async roles(runId: string): Promise<Roles | null> {
    await this.o.store.getRun(runId);
    return (await this.o.store.getRecord<Roles>(rolesKey(runId)))?.value ?? null;
  }

  /**
   * Assigns host k = nodeIds[k] (and standbys) for a run, and tells every host its role. Returns the roles
   * and what changed from the previous assignment, host by host (also logged). A node may hold one role.
   */
  async assign(
    runId: string,
    nodeIds: string[],
    standby: { hostIdx: number; nodeId: string }[] = [],
  ): Promise<{ roles: Roles; changes: RoleChange[] }> {
    await this.o.store.getRun(runId);
    if (nodeIds.length === 0)
      throw new FleetlinkError("INVALID_ARGUMENT", "hosts: at least one node", { field: "hosts" });
    checkDistinct(nodeIds, standby);
    for (const [i, id] of [...nodeIds, ...standby.map((s) => s.nodeId)].entries())
      await this.o.store.getNode(id).catch((e: unknown) => {
        throw isFleetlinkError(e) ? new FleetlinkError(e.kind, e.message, { field: `hosts[${i}]` }) : e;
      });
    for (const s of standby)
      if (!Number.isInteger(s.hostIdx) || s.hostIdx < 0 || s.hostIdx >= nodeIds.length)
        throw new FleetlinkError("INVALID_ARGUMENT", `standby hostIdx ${s.hostIdx} is not a host`, {
          field: "standby",
        });
    const nHosts = nodeIds.length;
    const results = await this.callNodes(
      runId,
      nodeIds.map((dst, hostIdx) => assignCall(runId, { nHosts }, dst, hostIdx)),
      ASSIGN_TIMEOUT_MS,
    );
    const failed = results.findIndex((r) => !r.ok);
    if (failed >= 0) {
      const r = results[failed] as { ok: false; error: FleetlinkError };
      throw new FleetlinkError(r.error.kind, `host ${failed}: ${r.error.message}`, {
        field: `hosts[${failed}]`,
      });
    }
    const roles: Roles = {
      runId,
      nHosts,
      hosts: nodeIds.map((nodeId, hostIdx) => ({
        hostIdx,
        nodeId,
        standby: standby.filter((s) => s.hostIdx === hostIdx).map((s) => s.nodeId),
      })),
    };
    const cur = await this.o.store.getRecord<Roles>(rolesKey(runId));
    await this.o.store.putRecord(rolesKey(runId), roles, cur?.version ?? null);
    const changes = diffRoles(cur?.value ?? null, roles);
    if (cur && changes.length > 0)
      this.o.log.warn({ runId, changes: changes.map((c) => c.text) }, "host roles reassigned");
    return { roles, changes };
  }

  /** Standby takeovers of the run's current hosts (see TakeoverMonitor). */
  async takeoverStatus(runId: string): Promise<TakeoverStatus[]> {
    return takeoverStatus(this.o.store, await this.roles(runId));
  }

  async status(runId: string, kind: OpKind): Promise<OpStatus> {
    await this.o.store.getRun(runId);
    return (
      (await this.o.store.getRecord<OpStatus>(opKey(runId, kind)))?.value ?? {
        status: "not_requested",
        hosts: [],
      }
    );
  }

  async list(runId: string): Promise<Manifest[]> {
    await this.o.store.getRun(runId);
    return listCheckpoints(this.o.objects, runId);
  }

  /** Claims the operation slot for a run: CONFLICT (carrying the current status) if one is running. */
  private async begin(
    runId: string,
    kind: OpKind,
    id: string,
    roles: Roles,
    extra: (h: HostRole) => Partial<HostStatus> = () => ({}),
  ): Promise<StoredRecord<OpStatus>> {
    const now = Date.now();
    const hosts = roles.hosts.map((h) => ({
      hostIdx: h.hostIdx,
      nodeId: h.nodeId,
      status: "in_progress" as const,
      ...extra(h),
    }));
    const value: OpStatus = { status: "in_progress", id, hosts, startedAt: now, updatedAt: now };
    const key = opKey(runId, kind);
    const cur = await this.o.store.getRecord<OpStatus>(key);
    const busy =
      cur?.value.status === "in_progress" && Date.now() - (cur.value.updatedAt ?? 0) < this.o.staleMs;
    if (busy)
      throw Object.assign(
        new FleetlinkError("CONFLICT", `a ${kind} of checkpoint ${cur!.value.id} is in progress`),
        { current: cur!.value },
      );
    try {
      return await this.o.store.putRecord(key, value, cur?.version ?? null);
    } catch (e) {
      if (!isFleetlinkError(e, "STATUS_CONFLICT")) throw e;
      const now = await this.o.store.getRecord<OpStatus>(key);
      throw Object.assign(new FleetlinkError("CONFLICT", `another ${kind} started at the same moment`), {
        current: now?.value,
      });
    }
  }

  private async requireRoles(runId: string): Promise<Roles> {
    const roles = await this.roles(runId);
    if (!roles)
      throw new FleetlinkError(
        "INVALID_ARGUMENT",
        `run ${runId} has no host roles: assign them first, host k = the k-th node ` +
          `(fleetlink checkpoint assign --run ${runId} --hosts NODE0,NODE1,…; SDK: fleet.checkpoints.assign)`,
        { field: "run" },
      );
    return roles;
  }

  /** Starts a push of every host under a new checkpoint id; returns at once. A push in progress → CONFLICT. */
  async startPush(runId: string): Promise<{ id: string; done: Promise<OpStatus> }> {
    await this.o.store.getRun(runId);
    const roles = await this.requireRoles(runId);
    const id = newId();
    const rec = await this.begin(runId, "push", id, roles);
    return { id, done: this.observed("push", runPush(this.context, runId, id, roles, rec)) };
  }

  /** Reports an operation's outcome and duration to the observer when it ends. */
  private async observed(kind: OpKind, done: Promise<OpStatus>): Promise<OpStatus> {
    const started = performance.now();
    const st = await done;
    const outcome = st.status === "ok" ? "ok" : (st.error?.kind ?? "error");
    this.o.observe?.operation({ kind, outcome, seconds: (performance.now() - started) / 1000 });
    return st;
  }

  /**
   * Starts a pull of checkpoint `id` (or "latest") on every host; returns at once. A pull in progress →
   * CONFLICT. Host k restores the part host k pushed; if roles moved between live nodes since (a swap), that
   * is HOST_MISMATCH unless `allowRoleChanges` (see checkWriters).
   */
  async startPull(
    runId: string,
    idOrLatest: string,
    opts: { allowRoleChanges?: boolean } = {},
  ): Promise<{ id: string; done: Promise<OpStatus> }> {
    await this.o.store.getRun(runId);
    const roles = await this.requireRoles(runId);
    const m = await findCheckpoint(this.o.objects, runId, idOrLatest, {
      list: `fleetlink checkpoint list --run ${runId}`,
      push: `fleetlink checkpoint push --run ${runId}`,
    });
    if (m.nHosts !== roles.nHosts)
      throw new FleetlinkError(
        "HOST_MISMATCH",
        `checkpoint ${m.id} has ${m.nHosts} hosts, the run has ${roles.nHosts}`,
      );
    // Each node checks its part too; refusing here fails fast, before any host starts.
    for (const h of roles.hosts)
      checkPart(
        m.hosts.find((p) => p.hostIdx === h.hostIdx),
        runId,
        m.id,
        h.hostIdx,
      );
    checkWriters(roles, m.hosts, m.id, opts.allowRoleChanges === true);
    const rec = await this.begin(runId, "pull", m.id, roles, (h) =>
      restoresFrom(h, m.hosts.find((p) => p.hostIdx === h.hostIdx)!),
    );
    return { id: m.id, done: this.observed("pull", runPull(this.context, runId, m, roles, rec)) };
  }

  /**
   * Makes the first standby of host k take over: it restores host k's newest checkpoint, then the role record
   * names it as host k (compare-and-set, so of two replicas doing this, one wins).
   */
  async activate(runId: string, hostIdx: number): Promise<Roles> {
    await this.o.store.getRun(runId);
    const rec = await this.o.store.getRecord<Roles>(rolesKey(runId));
    const host = rec?.value.hosts[hostIdx];
    if (!rec || !host)
      throw new FleetlinkError("INVALID_ARGUMENT", `run ${runId} has no host ${hostIdx}`, {
        field: "hostIdx",
      });
    const next = host.standby[0];
    if (!next)
      throw new FleetlinkError("INVALID_ARGUMENT", `host ${hostIdx} has no standby`, { field: "hostIdx" });
    const [r] = await this.callNodes(
      runId,
      [{ dst: next, method: "checkpoint.activate", payload: { runId, hostIdx, nHosts: rec.value.nHosts } }],
      this.o.transferTimeoutMs,
    );
    if (!r!.ok) throw r!.error;
    const roles: Roles = {
      ...rec.value,
      hosts: rec.value.hosts.map((h) =>
        h.hostIdx === hostIdx ? { hostIdx, nodeId: next, standby: h.standby.slice(1) } : h,
      ),
    };
    await this.o.store.putRecord(rec.key, roles, rec.version);
    this.o.log.warn({ runId, hostIdx, from: host.nodeId, to: next }, "standby took over host");
    await putTakeover(this.o.store, runId, {
      hostIdx,
      from: host.nodeId,
      to: next,
      status: "ok",
      attempts: 1,
      updatedAt: await this.o.store.now(),
    }).catch((e) => this.o.log.warn({ err: String(e), runId, hostIdx }, "takeover status not recorded"));
    return roles;
  }

  /**
   * Every `intervalMs`: a host whose node missed its heartbeat window and has a standby is taken over;
   * failed takeovers back off and give up after `retry.attempts` (see TakeoverMonitor).
   */
  startMonitor(intervalMs = 1000, retry: Partial<TakeoverRetry> = {}): void {
    this.monitor.start(intervalMs, { ...DEFAULT_TAKEOVER_RETRY, ...retry });
  }

  stop(): void {
    this.monitor.stop();
    this.calls.stop();
  }
}
