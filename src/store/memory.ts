import { EventEmitter } from "node:events";
import { FleetlinkError } from "../protocol/errors.ts";
import { isId, newId } from "../protocol/ids.ts";
import type { Instruction, NodeRecord, NodeStatus, Reply, Run, RunStatus } from "../protocol/types.ts";
import {
  ABANDONED_REASON,
  type ClaimInstructionsInput,
  type ClaimRepliesInput,
  type CleanupResult,
  checkClaim,
  checkCleanupAge,
  checkExtendLeases,
  checkId,
  checkIds,
  checkInstructions,
  checkListLimit,
  checkName,
  checkNewEnrollToken,
  checkOpenSession,
  checkPositiveInt,
  checkRelease,
  checkRenewals,
  checkReply,
  checkRunStatus,
  checkTransition,
  diagnoseReply,
  type EnrollTokenRecord,
  type ExtendLeasesInput,
  enrollRefusal,
  type ListRunsOptions,
  type NewEnrollToken,
  type NewInstruction,
  type NewNode,
  type NewReply,
  newInstructionRecord,
  type OpenSessionInput,
  type OpenSessionResult,
  OUTCOME_TEXT,
  type OutcomeCode,
  type PushCall,
  type PushResult,
  pushEach,
  type ReleaseInput,
  type ResolvedStoreOptions,
  resolveOptions,
  type SessionRenewal,
  type Store,
  type StoredRecord,
  type StoreOptions,
  type StoreReplyResult,
  type StoreStats,
  sessionSuperseded,
} from "./store.ts";

interface MemReply extends Reply {
  claimed: boolean;
  seq: number;
}

/**
 * In-process store for tests and single-process embedding. JavaScript runs one operation at a time, so each
 * method body is atomic; state is copied in and out so callers never alias it.
 */
export class MemoryStore implements Store {
  readonly backend = "memory" as const;
  readonly options: ResolvedStoreOptions;
  private runs = new Map<string, Run>();
  private nodes = new Map<string, NodeRecord>();
  /** Each node's current session; kept apart so that NodeRecords read the same on every backend. */
  private sessions = new Map<string, string>();
  private instructions = new Map<string, Instruction & { seq: number }>();
  private replies = new Map<string, MemReply>();
  private repliesByInstruction = new Map<string, MemReply>();
  private seq = 0;
  private readonly records = new Map<string, StoredRecord>();
  /** In creation order; `usedAt`/`revokedAt` drive cleanup. */
  private readonly tokens = new Map<
    string,
    EnrollTokenRecord & { usedAt: number | null; revokedAt: number | null }
  >();
  private readonly changes = new EventEmitter();

  constructor(opts?: StoreOptions) {
    this.options = resolveOptions(opts);
  }

  private time(): number {
    return this.options.clock();
  }

  async now(): Promise<number> {
    return this.time();
  }

  private run(id: string): Run {
    const r = this.runs.get(checkId("runId", id));
    if (!r) throw new FleetlinkError("RUN_NOT_FOUND", `no run ${id}`);
    return r;
  }

  private node(id: string, field = "nodeId"): NodeRecord {
    const n = this.nodes.get(checkId(field, id));
    if (!n) throw new FleetlinkError("NODE_NOT_FOUND", `no node ${id}`, { field });
    return n;
  }

  async createRun(opts: { id?: string } = {}): Promise<Run> {
    const id = opts.id === undefined ? newId() : checkId("id", opts.id);
    if (this.runs.has(id)) throw new FleetlinkError("INVALID_ARGUMENT", `run ${id} exists`, { field: "id" });
    const now = this.time();
    const run: Run = { id, status: "pending", reason: null, createdAt: now, updatedAt: now };
    this.runs.set(id, run);
    return { ...run };
  }

  async getRun(id: string): Promise<Run> {
    return { ...this.run(id) };
  }

  async transitionRun(id: string, from: RunStatus, to: RunStatus, reason?: string): Promise<Run> {
    checkTransition(from, to);
    const run = this.run(id);
    if (run.status !== from)
      throw new FleetlinkError("STATUS_CONFLICT", `run ${id} is ${run.status}, not ${from}`, {
        field: "from",
      });
    run.status = to;
    run.reason = reason ?? null;
    run.updatedAt = this.time();
    return { ...run };
  }

  async registerNode(input: NewNode): Promise<NodeRecord> {
    checkName("name", input.name);
    checkPositiveInt("heartbeatIntervalMs", input.heartbeatIntervalMs);
    const now = this.time();
    // Same rule as the SQL stores (see Store.registerNode); one method body runs at a time, so it is atomic.
    for (const n of this.nodes.values()) {
      if (n.name !== input.name) continue;
      const online = n.status === "online" && n.onlineUntil! > now;
      const young = n.status === "registered" && n.createdAt + 2 * n.heartbeatIntervalMs > now;
      if (online || young)
        throw new FleetlinkError("NAME_TAKEN", `a live node (${n.id}) is named ${input.name}`, {
          field: "name",
        });
    }
    const node: NodeRecord = {
      id: newId(),
      name: input.name,
      status: "registered",
      heartbeatIntervalMs: input.heartbeatIntervalMs,
      onlineUntil: null,
      credentialHash: input.credentialHash ?? null,
      createdAt: now,
      approved: input.approved !== false,
    };
    this.nodes.set(node.id, node);
    return { ...node };
  }

  async approveNode(nodeId: string): Promise<NodeRecord> {
    const n = this.node(nodeId);
    if (n.status === "unregistered")
      throw new FleetlinkError("NODE_UNREGISTERED", `node ${nodeId} is unregistered`);
    n.approved = true;
    return { ...n };
  }

  async getNode(id: string): Promise<NodeRecord> {
    return { ...this.node(id) };
  }

  async listNodes(opts: { status?: NodeStatus } = {}): Promise<NodeRecord[]> {
    return [...this.nodes.values()]
      .filter((n) => opts.status === undefined || n.status === opts.status)
      .sort((a, b) => (a.id < b.id ? -1 : 1))
      .map((n) => ({ ...n }));
  }

  async heartbeat(nodeId: string, heartbeatIntervalMs?: number, sessionId?: string): Promise<NodeRecord> {
    if (heartbeatIntervalMs !== undefined) checkPositiveInt("heartbeatIntervalMs", heartbeatIntervalMs);
    if (sessionId !== undefined) checkName("sessionId", sessionId);
    const n = this.node(nodeId);
    if (n.status === "unregistered")
      throw new FleetlinkError("NODE_UNREGISTERED", `node ${nodeId} is unregistered`);
    if (sessionId !== undefined && this.sessions.get(nodeId) !== sessionId)
      throw sessionSuperseded(nodeId, sessionId);
    this.beat(n, heartbeatIntervalMs);
    return { ...n };
  }

  private beat(n: NodeRecord, heartbeatIntervalMs: number | undefined): void {
    n.heartbeatIntervalMs = heartbeatIntervalMs ?? n.heartbeatIntervalMs;
    n.status = "online";
    n.onlineUntil = this.time() + 2 * n.heartbeatIntervalMs;
  }

  async openSession(input: OpenSessionInput): Promise<OpenSessionResult> {
    checkOpenSession(input);
    const n = this.node(input.nodeId);
    if (n.status === "unregistered")
      throw new FleetlinkError("NODE_UNREGISTERED", `node ${input.nodeId} is unregistered`);
    this.sessions.set(n.id, input.sessionId);
    this.beat(n, input.heartbeatIntervalMs);
    const keep = new Set(input.keep ?? []);
    let released = 0;
    for (const i of this.instructions.values()) {
      if (i.dst !== n.id || i.state !== "leased") continue;
      if (keep.has(i.id)) {
        i.leaseOwner = input.sessionId;
        i.leaseUntil = this.time() + this.options.leaseMs;
        continue;
      }
      i.state = "pending";
      i.leaseUntil = null;
      i.leaseOwner = null;
      released++;
    }
    if (released) this.changed();
    return { node: { ...n }, released };
  }

  async renewSessions(items: readonly SessionRenewal[]): Promise<Map<string, number>> {
    checkRenewals(items);
    const out = new Map<string, number>();
    const now = this.time();
    for (const r of items) {
      const n = this.nodes.get(r.nodeId);
      if (!n || n.status === "unregistered" || this.sessions.get(r.nodeId) !== r.sessionId) continue;
      n.heartbeatIntervalMs = r.heartbeatIntervalMs ?? n.heartbeatIntervalMs;
      n.status = "online";
      n.onlineUntil = Math.max(n.onlineUntil ?? 0, now - r.ageMs + 2 * n.heartbeatIntervalMs);
      out.set(n.id, n.onlineUntil);
    }
    return out;
  }

  async claimableNodes(limit = 10_000): Promise<string[]> {
    checkPositiveInt("limit", limit);
    const now = this.time();
    const out = new Set<string>();
    for (const i of this.instructions.values()) {
      if (out.size >= limit) break;
      if (this.claimable(i, now)) out.add(i.dst);
    }
    return [...out];
  }

  async getSessions(nodeIds: readonly string[]): Promise<Map<string, string | null>> {
    checkIds("nodeIds", nodeIds);
    const out = new Map<string, string | null>();
    for (const id of nodeIds) if (this.nodes.has(id)) out.set(id, this.sessions.get(id) ?? null);
    return out;
  }

  async extendLeases(input: ExtendLeasesInput): Promise<string[]> {
    checkExtendLeases(input);
    const until = this.time() + (input.leaseMs ?? this.options.leaseMs);
    const want = new Set(input.instructionIds);
    const out: string[] = [];
    for (const i of this.instructions.values()) {
      if (!want.has(i.id) || i.dst !== input.nodeId || i.state !== "leased") continue;
      if (i.leaseOwner !== input.sessionId) continue;
      i.leaseUntil = Math.min(until, i.expiresAt);
      out.push(i.id);
    }
    return out;
  }

  async unregisterNode(nodeId: string): Promise<NodeRecord> {
    const n = this.node(nodeId);
    n.status = "unregistered";
    return { ...n };
  }

  pushBatch(calls: readonly PushCall[]): Promise<PushResult[]> {
    // Each push is atomic here already (one synchronous step); nothing to gain from grouping them.
    return pushEach(this, calls);
  }

  async pushInstructions(runId: string, items: readonly NewInstruction[]): Promise<Instruction[]> {
    checkInstructions(items, this.options);
    const run = this.run(runId);
    if (run.status === "finished") throw new FleetlinkError("RUN_FINISHED", `run ${runId} is finished`);
    items.forEach((it, i) => {
      const n = this.node(it.dst, `items[${i}].dst`);
      if (n.status === "unregistered")
        throw new FleetlinkError("NODE_UNREGISTERED", `node ${it.dst} is unregistered`, {
          field: `items[${i}].dst`,
        });
      if (it.id !== undefined && this.instructions.has(it.id))
        throw new FleetlinkError("INVALID_ARGUMENT", `instruction ${it.id} exists`, {
          field: `items[${i}].id`,
        });
    });
    const now = this.time();
    const out = items.map((it) => {
      const leased = it.leaseTo !== undefined && this.sessions.get(it.dst) === it.leaseTo;
      const ins = {
        ...newInstructionRecord(it, runId, now, leased, this.options),
        payload: new Uint8Array(it.payload ?? []),
        seq: ++this.seq,
      };
      this.instructions.set(ins.id, ins);
      return ins;
    });
    this.changed();
    return out.map(publicInstruction);
  }

  private changed(): void {
    queueMicrotask(() => this.changes.emit("change", "local"));
  }

  /** Every change of an in-process store is made through this one handle: all are "local". */
  watch(onChange: (source: "local" | "remote") => void): () => void {
    this.changes.on("change", onChange);
    return () => this.changes.off("change", onChange);
  }

  private claimable(i: Instruction, now: number): boolean {
    if (i.expiresAt <= now || i.attempts >= i.maxAttempts) return false;
    return i.state === "pending" || (i.state === "leased" && i.leaseUntil! <= now);
  }

  async claimInstructions(input: ClaimInstructionsInput): Promise<Instruction[]> {
    const sessions = checkClaim(input);
    const now = this.time();
    const lease = input.leaseMs ?? this.options.leaseMs;
    // With sessions: only nodes whose current session is the one given, the session holding the lease.
    const owners = new Map<string, string | null>(
      sessions
        ? sessions
            .filter((x) => this.sessions.get(x.nodeId) === x.sessionId)
            .map((x) => [x.nodeId, x.sessionId])
        : input.nodeIds!.map((id) => [id, input.owner ?? null]),
    );
    const taken = new Map<string, number>();
    const out: Instruction[] = [];
    for (const i of this.instructions.values()) {
      // Map iteration is insertion order, which is seq order: FIFO per node.
      if (!owners.has(i.dst) || !this.claimable(i, now)) continue;
      const n = taken.get(i.dst) ?? 0;
      if (n >= input.limit) continue;
      taken.set(i.dst, n + 1);
      i.state = "leased";
      i.attempts += 1;
      i.leaseUntil = now + lease;
      i.leaseOwner = owners.get(i.dst)!;
      out.push(publicInstruction(i));
    }
    return out;
  }

  async releaseInstructions(input: ReleaseInput): Promise<number> {
    checkRelease(input);
    const keep = new Set(input.exceptIds ?? []);
    let n = 0;
    for (const i of this.instructions.values()) {
      if (i.dst !== input.nodeId || i.state !== "leased" || keep.has(i.id)) continue;
      if (input.owner !== undefined && i.leaseOwner !== input.owner) continue;
      i.state = "pending";
      i.leaseUntil = null;
      i.leaseOwner = null;
      n++;
    }
    if (n) this.changed();
    return n;
  }

  async withdrawInstructions(runId: string, ids: readonly string[]): Promise<string[]> {
    checkId("runId", runId);
    checkIds("ids", ids);
    const out: string[] = [];
    for (const id of ids) {
      const i = this.instructions.get(id);
      if (!i || i.runId !== runId || i.state !== "pending") continue;
      i.state = "done";
      const code = "FLEETLINK_E_CANCELLED";
      this.addReply(i, i.dst, newId(), new Uint8Array(0), {
        code,
        message: OUTCOME_TEXT[code],
      }).claimed = true;
      out.push(id);
    }
    return out;
  }

  async getInstructions(runId: string, ids: readonly string[]): Promise<Instruction[]> {
    checkId("runId", runId);
    checkIds("ids", ids);
    return ids
      .map((id) => this.instructions.get(id))
      .filter((i): i is Instruction & { seq: number } => i !== undefined && i.runId === runId)
      .sort((a, b) => a.seq - b.seq)
      .map(publicInstruction);
  }

  async getReplies(runId: string, instructionIds: readonly string[]): Promise<Reply[]> {
    checkId("runId", runId);
    checkIds("instructionIds", instructionIds);
    return instructionIds
      .map((id) => this.repliesByInstruction.get(id))
      .filter((r): r is MemReply => r !== undefined && r.runId === runId)
      .sort((a, b) => a.seq - b.seq)
      .map(publicReply);
  }

  async listRuns(opts: ListRunsOptions = {}): Promise<Run[]> {
    const limit = checkListLimit(opts.limit);
    const status = opts.status === undefined ? undefined : checkRunStatus("status", opts.status);
    return [...this.runs.values()]
      .filter((r) => status === undefined || r.status === status)
      .sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
      .slice(0, limit)
      .map((r) => ({ ...r }));
  }

  async listInstructions(runId: string, opts: { limit?: number } = {}): Promise<Instruction[]> {
    checkId("runId", runId);
    const limit = checkListLimit(opts.limit);
    this.run(runId);
    const out: (Instruction & { seq: number })[] = [];
    for (const i of this.instructions.values()) if (i.runId === runId) out.push(i);
    return out
      .sort((a, b) => b.seq - a.seq)
      .slice(0, limit)
      .map(publicInstruction);
  }

  async storeReplies(items: readonly NewReply[]): Promise<StoreReplyResult[]> {
    const now = this.time();
    const results = items.map((r, idx): StoreReplyResult => {
      try {
        checkReply(r, `items[${idx}]`, this.options);
        this.run(r.runId);
      } catch (error) {
        return { ok: false, error: error as FleetlinkError };
      }
      const ins = this.instructions.get(r.replyTo);
      const idTaken = r.id !== undefined && this.replies.has(r.id);
      const live =
        ins &&
        ins.dst === r.nodeId &&
        ins.runId === r.runId &&
        ins.state !== "done" &&
        ins.expiresAt > now &&
        !idTaken;
      if (!live) return diagnoseReply(r, ins, this.repliesByInstruction.get(r.replyTo), idTaken, now);
      ins.state = "done";
      ins.leaseUntil = null;
      const reply = this.addReply(
        ins,
        r.nodeId,
        r.id ?? newId(),
        new Uint8Array(r.payload ?? []),
        r.error ?? null,
      );
      if (r.claimed) reply.claimed = true;
      return { ok: true, reply: publicReply(reply), duplicate: false };
    });
    // Like the SQL stores: a stored reply is a change watchers hear of (the hub's checkpoint calls wait on it).
    if (results.some((r) => r.ok && !r.duplicate)) this.changed();
    return results;
  }

  private addReply(
    ins: Instruction,
    src: string,
    id: string,
    payload: Uint8Array,
    error: Reply["error"],
  ): MemReply {
    const reply: MemReply = {
      id,
      runId: ins.runId,
      src,
      dst: ins.src,
      replyTo: ins.id,
      groupId: ins.groupId,
      method: ins.method,
      payload,
      createdAt: this.time(),
      error,
      claimed: false,
      seq: ++this.seq,
    };
    this.replies.set(id, reply);
    this.repliesByInstruction.set(ins.id, reply);
    return reply;
  }

  async claimReplies(input: ClaimRepliesInput): Promise<Reply[]> {
    checkId("runId", input.runId);
    const limit = input.limit === undefined ? 1000 : checkPositiveInt("limit", input.limit);
    const only = input.instructionIds ? new Set(input.instructionIds) : null;
    if (input.instructionIds) checkIds("instructionIds", input.instructionIds);
    const out: Reply[] = [];
    for (const r of this.replies.values()) {
      if (out.length >= limit) break;
      if (r.claimed || r.runId !== input.runId || (only && !only.has(r.replyTo))) continue;
      r.claimed = true;
      out.push(publicReply(r));
    }
    return out;
  }

  async sweep(): Promise<number> {
    const now = this.time();
    for (const n of this.nodes.values())
      if (n.status === "online" && n.onlineUntil! <= now) n.status = "offline";
    let made = 0;
    for (const i of this.instructions.values()) {
      if (i.state === "done") continue;
      const n = this.nodes.get(i.dst)!;
      const gone = n.status === "unregistered";
      const away = n.onlineUntil === null || n.onlineUntil <= now;
      let code: OutcomeCode | null = null;
      if (gone || (away && !i.holdWhileOffline)) code = "FLEETLINK_E_NODE_UNAVAILABLE";
      else if (i.attempts >= i.maxAttempts && (i.state === "pending" || i.leaseUntil! <= now))
        code = "FLEETLINK_E_DELIVERY_FAILED";
      else if (i.expiresAt <= now) code = "FLEETLINK_E_MESSAGE_EXPIRED";
      if (!code) continue;
      i.state = "done";
      i.leaseUntil = null;
      i.leaseOwner = null;
      this.addReply(i, i.dst, newId(), new Uint8Array(0), { code, message: OUTCOME_TEXT[code] });
      made++;
    }
    if (made) this.changed();
    return made;
  }

  async getRecord<T>(key: string): Promise<StoredRecord<T> | null> {
    checkName("key", key, 500);
    const r = this.records.get(key);
    return r ? (structuredClone(r) as StoredRecord<T>) : null;
  }

  async listRecords<T>(prefix: string): Promise<StoredRecord<T>[]> {
    return [...this.records.values()]
      .filter((r) => r.key.startsWith(prefix))
      .sort((a, b) => (a.key < b.key ? -1 : 1))
      .map((r) => structuredClone(r) as StoredRecord<T>);
  }

  async putRecord<T>(key: string, value: T, expectedVersion: number | null): Promise<StoredRecord<T>> {
    checkName("key", key, 500);
    const cur = this.records.get(key);
    if ((cur?.version ?? null) !== expectedVersion)
      throw new FleetlinkError("STATUS_CONFLICT", `record ${key} is at version ${cur?.version ?? "none"}`, {
        field: "expectedVersion",
      });
    const next: StoredRecord = {
      key,
      version: (cur?.version ?? 0) + 1,
      value: structuredClone(value),
      updatedAt: this.time(),
    };
    this.records.set(key, next);
    return structuredClone(next) as StoredRecord<T>;
  }

  async createEnrollToken(input: NewEnrollToken): Promise<EnrollTokenRecord> {
    checkNewEnrollToken(input);
    const t = {
      id: newId(),
      label: input.label ?? null,
      secretHash: input.secretHash,
      createdAt: this.time(),
      expiresAt: input.expiresAt ?? null,
      uses: input.uses ?? null,
      used: 0,
      revoked: false,
      usedAt: null,
      revokedAt: null,
    };
    this.tokens.set(t.id, t);
    return publicToken(t);
  }

  async listEnrollTokens(): Promise<EnrollTokenRecord[]> {
    // Newest first; among tokens made in the same ms, the later one first (as the SQL stores' seq order).
    return [...this.tokens.values()]
      .reverse()
      .sort((a, b) => b.createdAt - a.createdAt)
      .map(publicToken);
  }

  async revokeEnrollToken(id: string): Promise<EnrollTokenRecord> {
    const t = this.tokens.get(checkId("id", id));
    if (!t) throw new FleetlinkError("TOKEN_NOT_FOUND", `no enrollment token ${id}`, { field: "id" });
    t.revoked = true;
    t.revokedAt ??= this.time();
    return publicToken(t);
  }

  async useEnrollToken(id: string, secretHash: string): Promise<EnrollTokenRecord> {
    const now = this.time();
    const t = isId(id) ? this.tokens.get(id) : undefined;
    const usable =
      t &&
      t.secretHash === secretHash &&
      !t.revoked &&
      (t.expiresAt === null || t.expiresAt > now) &&
      (t.uses === null || t.used < t.uses);
    if (!usable) throw enrollRefusal(t && publicToken(t), secretHash, now);
    t.used++;
    t.usedAt = now;
    return publicToken(t);
  }

  async cleanup(olderThanMs: number): Promise<CleanupResult> {
    checkCleanupAge(olderThanMs);
    const now = this.time();
    const cutoff = now - olderThanMs;
    const res = { instructions: 0, replies: 0, runs: 0, abandonedRuns: 0, nodes: 0, enrollTokens: 0 };
    // Same rules as the SQL stores (see Store.cleanup); one method body runs at a time, so it is atomic.
    const active = new Set<string>();
    for (const i of this.instructions.values())
      if (i.state !== "done" || i.createdAt > cutoff) active.add(i.runId);
    for (const r of this.replies.values()) if (r.createdAt > cutoff) active.add(r.runId);
    const abandoned = new Set<string>();
    for (const run of this.runs.values()) {
      if (run.status === "finished" || run.updatedAt > cutoff || active.has(run.id)) continue;
      run.status = "finished";
      run.reason = ABANDONED_REASON;
      run.updatedAt = now;
      abandoned.add(run.id);
    }
    res.abandonedRuns = abandoned.size;
    for (const t of this.tokens.values()) {
      const dead =
        (t.revokedAt !== null && t.revokedAt <= cutoff) ||
        (t.expiresAt !== null && t.expiresAt <= cutoff) ||
        (t.uses !== null && t.used >= t.uses && t.usedAt! <= cutoff);
      if (!dead) continue;
      this.tokens.delete(t.id);
      res.enrollTokens++;
    }
    for (const i of this.instructions.values()) {
      const r = this.repliesByInstruction.get(i.id);
      if (i.state !== "done" || !r?.claimed || r.createdAt > cutoff) continue;
      this.instructions.delete(i.id);
      this.replies.delete(r.id);
      this.repliesByInstruction.delete(i.id);
      res.instructions++;
      res.replies++;
    }
    const busy = new Set([...this.instructions.values()].map((i) => i.runId));
    for (const run of this.runs.values())
      if (
        run.status === "finished" &&
        (run.updatedAt <= cutoff || abandoned.has(run.id)) &&
        !busy.has(run.id)
      ) {
        this.runs.delete(run.id);
        res.runs++;
      }
    const holding = new Set<string>();
    for (const i of this.instructions.values()) if (i.state !== "done") holding.add(i.dst);
    for (const n of this.nodes.values()) {
      const waiting = n.status === "registered" && n.approved;
      if (waiting || (n.onlineUntil ?? n.createdAt) > cutoff || holding.has(n.id)) continue;
      this.nodes.delete(n.id);
      this.sessions.delete(n.id);
      res.nodes++;
    }
    return res;
  }

  async stats(): Promise<StoreStats> {
    const s: StoreStats = {
      runs: { pending: 0, running: 0, finished: 0 },
      nodes: { registered: 0, online: 0, offline: 0, unregistered: 0 },
      instructions: { pending: 0, leased: 0, done: 0 },
      replies: { pending: 0, claimed: 0 },
    };
    for (const r of this.runs.values()) s.runs[r.status]++;
    for (const n of this.nodes.values()) s.nodes[n.status]++;
    for (const i of this.instructions.values()) s.instructions[i.state]++;
    for (const r of this.replies.values()) s.replies[r.claimed ? "claimed" : "pending"]++;
    return s;
  }

  async close(): Promise<void> {}
}

const publicInstruction = ({ seq: _, ...i }: Instruction & { seq: number }): Instruction => ({
  ...i,
  payload: new Uint8Array(i.payload),
});

const publicToken = ({
  usedAt: _,
  revokedAt: __,
  ...t
}: EnrollTokenRecord & { usedAt?: number | null; revokedAt?: number | null }): EnrollTokenRecord => ({
  ...t,
});

const publicReply = ({ seq: _, claimed: __, ...r }: MemReply): Reply => ({
  ...r,
  payload: new Uint8Array(r.payload),
});
