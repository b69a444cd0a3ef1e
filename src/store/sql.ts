import { EventEmitter } from "node:events";
import type { Instruction, NodeRecord, Reply, Run, RunStatus } from "../protocol/types.ts";
import type { Db, Dialect, SqlConn } from "./dialect.ts";
import { appendAudit, listAudit } from "./ops/audit.ts";
import * as blobs from "./ops/blobs.ts";
import { cancellationsSince } from "./ops/cancellations.ts";
import { claimableNodes, claimInstructions, claimReplies } from "./ops/claim.ts";
import { cleanup } from "./ops/cleanup.ts";
import { collectBlobs } from "./ops/collect-blobs.ts";
import {
  checkEnrollToken,
  createEnrollToken,
  listEnrollTokens,
  revokeEnrollToken,
  useEnrollToken,
} from "./ops/enroll-tokens.ts";
import { approveNode, getNode, listNodes, registerNode, unregisterNode } from "./ops/nodes.ts";
import { activityCounters, callInstructions, nodeInstructions, recentFailures } from "./ops/outcomes.ts";
import { authenticatePrincipal, createPrincipal, listPrincipals, revokePrincipal } from "./ops/principals.ts";
import { pushBatch, pushInstructions } from "./ops/push.ts";
import { getRecord, listRecords, putRecord } from "./ops/records.ts";
import { storeReplies } from "./ops/replies.ts";
import * as runs from "./ops/runs.ts";
import {
  extendLeases,
  getSessions,
  heartbeat,
  leaveSession,
  openSession,
  releaseInstructions,
  renewSessions,
} from "./ops/sessions.ts";
import { sweep } from "./ops/sweep.ts";
import type {
  ActivityCounters,
  AuditEntry,
  BeginBlobUploadInput,
  BeginBlobUploadResult,
  BlobReader,
  BlobRecord,
  BlobUpload,
  CallInstructionsOptions,
  Cancellation,
  Change,
  ClaimInstructionsInput,
  ClaimRepliesInput,
  CleanupResult,
  CollectBlobsInput,
  CollectBlobsResult,
  EnrollTokenRecord,
  ExtendLeasesInput,
  InstructionOutcome,
  LeaveSessionInput,
  LeaveSessionResult,
  ListAuditOptions,
  ListNodesOptions,
  ListRunsOptions,
  NewAuditEntry,
  NewEnrollToken,
  NewInstruction,
  NewNode,
  NewPrincipal,
  NewReply,
  NodeInstructionsOptions,
  OpenSessionInput,
  OpenSessionResult,
  PrincipalRecord,
  PushCall,
  PushResult,
  RecentFailure,
  RecentFailuresOptions,
  ReleaseInput,
  ResolvedStoreOptions,
  SessionRenewal,
  Store,
  StoredRecord,
  StoreReplyResult,
  StoreStats,
  WithdrawOptions,
} from "./store.ts";

export { readConn, type SqlConn } from "./dialect.ts";

/**
 * A Store over SQL. Every operation is a function of src/store/ops/ written once for both dialects (the
 * differences are data in `Dialect`, or a visible branch in the operation); a backend subclass supplies only
 * what belongs to its connection: transactions, statements outside them, the time, watching other replicas,
 * closing.
 */
export abstract class SqlStore implements Store {
  abstract readonly backend: "sqlite" | "postgres";
  readonly options: ResolvedStoreOptions;
  /** What the operations are handed. */
  protected readonly ops: Db;

  constructor(dialect: Dialect, options: ResolvedStoreOptions) {
    this.options = options;
    this.ops = {
      d: dialect,
      options,
      tx: (fn, mode) => this.tx(fn, mode),
      auto: (fn) => this.auto(fn),
      changed: (others) => this.changed(others),
    };
  }

  /** Runs fn in a write transaction that no other replica can interleave with on the rows it touches. */
  protected abstract tx<T>(fn: (c: SqlConn) => Promise<T>, mode?: "read" | "write"): Promise<T>;
  /** See `Db.auto`. */
  protected abstract auto<T>(fn: (q: SqlConn["q"], nowParam: number | null) => Promise<T>): Promise<T>;
  /** Lets other replicas know that something committed (PostgreSQL: NOTIFY, coalesced; SQLite: nothing to do). */
  protected abstract announce(change?: Change): void;
  /** Starts noticing other processes' commits (with what they concern, when they say); returns a stop function. */
  protected abstract watchOthers(onChange: (change?: Change) => void): () => void;
  abstract close(): Promise<void>;

  /** The injected clock or the host's (see `SqlConn.now` for the time transactions use). */
  protected time(): number {
    return this.options.clock();
  }

  async now(): Promise<number> {
    return this.time();
  }

  private readonly local = new EventEmitter();

  /** Tells this handle's watchers now, and other replicas (see `announce`) after the commit. */
  protected changed(others: boolean | Change = true): void {
    queueMicrotask(() => this.local.emit("change", "local"));
    if (others !== false) this.announce(others === true ? undefined : others);
  }

  /** Remote-change listeners; they share one `watchOthers` (one LISTEN connection, one poll timer). */
  private readonly remote = new Set<(change?: Change) => void>();
  private stopOthers: (() => void) | undefined;

  watch(onChange: (source: "local" | "remote", change?: Change) => void): () => void {
    this.local.on("change", onChange);
    const onRemote = (change?: Change) => onChange("remote", change);
    this.remote.add(onRemote);
    this.stopOthers ??= this.watchOthers((change) => {
      for (const f of [...this.remote]) f(change);
    });
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.local.off("change", onChange);
      this.remote.delete(onRemote);
      if (this.remote.size > 0) return;
      this.stopOthers?.();
      this.stopOthers = undefined;
    };
  }

  createRun(opts?: { id?: string; tenant?: string }): Promise<Run> {
    return runs.createRun(this.ops, opts);
  }
  getRun(id: string): Promise<Run> {
    return runs.getRun(this.ops, id);
  }
  transitionRun(id: string, from: RunStatus, to: RunStatus, reason?: string): Promise<Run> {
    return runs.transitionRun(this.ops, id, from, to, reason);
  }
  listRuns(opts?: ListRunsOptions): Promise<Run[]> {
    return runs.listRuns(this.ops, opts);
  }
  listInstructions(runId: string, opts?: { limit?: number }): Promise<Instruction[]> {
    return runs.listInstructions(this.ops, runId, opts);
  }
  getInstructions(runId: string, ids: readonly string[]): Promise<Instruction[]> {
    return runs.getInstructions(this.ops, runId, ids);
  }
  getReplies(runId: string, instructionIds: readonly string[]): Promise<Reply[]> {
    return runs.getReplies(this.ops, runId, instructionIds);
  }
  withdrawInstructions(runId: string, ids: readonly string[], opts?: WithdrawOptions): Promise<string[]> {
    return runs.withdrawInstructions(this.ops, runId, ids, opts);
  }
  stats(): Promise<StoreStats> {
    return runs.stats(this.ops);
  }
  callInstructions(
    runId: string,
    groupId: string,
    opts?: CallInstructionsOptions,
  ): Promise<InstructionOutcome[]> {
    return callInstructions(this.ops, runId, groupId, opts);
  }
  nodeInstructions(nodeId: string, opts?: NodeInstructionsOptions): Promise<InstructionOutcome[]> {
    return nodeInstructions(this.ops, nodeId, opts);
  }
  activityCounters(afterReplySeq: number | null): Promise<ActivityCounters> {
    return activityCounters(this.ops, afterReplySeq);
  }
  recentFailures(opts?: RecentFailuresOptions): Promise<RecentFailure[]> {
    return recentFailures(this.ops, opts);
  }

  registerNode(input: NewNode): Promise<NodeRecord> {
    return registerNode(this.ops, input);
  }
  approveNode(nodeId: string): Promise<NodeRecord> {
    return approveNode(this.ops, nodeId);
  }
  getNode(id: string): Promise<NodeRecord> {
    return getNode(this.ops, id);
  }
  listNodes(opts?: ListNodesOptions): Promise<NodeRecord[]> {
    return listNodes(this.ops, opts);
  }
  unregisterNode(nodeId: string): Promise<NodeRecord> {
    return unregisterNode(this.ops, nodeId);
  }

  heartbeat(nodeId: string, heartbeatIntervalMs?: number, sessionId?: string): Promise<NodeRecord> {
    return heartbeat(this.ops, nodeId, heartbeatIntervalMs, sessionId);
  }
  openSession(input: OpenSessionInput): Promise<OpenSessionResult> {
    return openSession(this.ops, input);
  }
  leaveSession(input: LeaveSessionInput): Promise<LeaveSessionResult> {
    return leaveSession(this.ops, input);
  }
  renewSessions(items: readonly SessionRenewal[]): Promise<Map<string, number>> {
    return renewSessions(this.ops, items);
  }
  getSessions(nodeIds: readonly string[]): Promise<Map<string, string | null>> {
    return getSessions(this.ops, nodeIds);
  }
  extendLeases(input: ExtendLeasesInput): Promise<string[]> {
    return extendLeases(this.ops, input);
  }
  releaseInstructions(input: ReleaseInput): Promise<number> {
    return releaseInstructions(this.ops, input);
  }

  pushInstructions(runId: string, items: readonly NewInstruction[]): Promise<Instruction[]> {
    return pushInstructions(this.ops, runId, items);
  }
  pushBatch(calls: readonly PushCall[]): Promise<PushResult[]> {
    return pushBatch(this.ops, calls);
  }
  claimInstructions(input: ClaimInstructionsInput): Promise<Instruction[]> {
    return claimInstructions(this.ops, input);
  }
  claimableNodes(limit?: number): Promise<string[]> {
    return claimableNodes(this.ops, limit);
  }
  storeReplies(items: readonly NewReply[]): Promise<StoreReplyResult[]> {
    return storeReplies(this.ops, items);
  }
  claimReplies(input: ClaimRepliesInput): Promise<Reply[]> {
    return claimReplies(this.ops, input);
  }

  sweep(): Promise<number> {
    return sweep(this.ops);
  }
  cleanup(olderThanMs: number): Promise<CleanupResult> {
    return cleanup(this.ops, olderThanMs);
  }

  getRecord<T>(key: string): Promise<StoredRecord<T> | null> {
    return getRecord<T>(this.ops, key);
  }
  listRecords<T>(prefix: string): Promise<StoredRecord<T>[]> {
    return listRecords<T>(this.ops, prefix);
  }
  putRecord<T>(key: string, value: T, expectedVersion: number | null): Promise<StoredRecord<T>> {
    return putRecord(this.ops, key, value, expectedVersion);
  }

  createEnrollToken(input: NewEnrollToken): Promise<EnrollTokenRecord> {
    return createEnrollToken(this.ops, input);
  }
  listEnrollTokens(opts?: { tenant?: string }): Promise<EnrollTokenRecord[]> {
    return listEnrollTokens(this.ops, opts);
  }
  revokeEnrollToken(id: string): Promise<EnrollTokenRecord> {
    return revokeEnrollToken(this.ops, id);
  }
  useEnrollToken(id: string, secretHash: string): Promise<EnrollTokenRecord> {
    return useEnrollToken(this.ops, id, secretHash);
  }
  checkEnrollToken(id: string, secretHash: string): Promise<EnrollTokenRecord> {
    return checkEnrollToken(this.ops, id, secretHash);
  }

  createPrincipal(input: NewPrincipal): Promise<PrincipalRecord> {
    return createPrincipal(this.ops, input);
  }
  listPrincipals(opts?: { tenant?: string }): Promise<PrincipalRecord[]> {
    return listPrincipals(this.ops, opts);
  }
  revokePrincipal(id: string): Promise<PrincipalRecord> {
    return revokePrincipal(this.ops, id);
  }
  authenticatePrincipal(id: string, secretHash: string): Promise<PrincipalRecord> {
    return authenticatePrincipal(this.ops, id, secretHash);
  }
  appendAudit(entries: readonly NewAuditEntry[]): Promise<void> {
    return appendAudit(this.ops, entries);
  }
  listAudit(opts?: ListAuditOptions): Promise<{ entries: AuditEntry[]; nextBeforeSeq: number | null }> {
    return listAudit(this.ops, opts);
  }

  beginBlobUpload(input: BeginBlobUploadInput): Promise<BeginBlobUploadResult> {
    return blobs.beginBlobUpload(this.ops, input);
  }
  getBlobUpload(id: string): Promise<BlobUpload | null> {
    return blobs.getBlobUpload(this.ops, id);
  }
  recordBlobUpload(
    id: string,
    offset: number,
    state: string | null,
    expectedOffset?: number,
  ): Promise<BlobUpload> {
    return blobs.recordBlobUpload(this.ops, id, offset, state, expectedOffset);
  }
  completeBlobUpload(id: string): Promise<{ blob: BlobRecord; redundantObjectKey: string | null }> {
    return blobs.completeBlobUpload(this.ops, id);
  }
  abortBlobUpload(id: string): Promise<BlobUpload | null> {
    return blobs.abortBlobUpload(this.ops, id);
  }
  readableBlob(sha256: string, reader: BlobReader): Promise<BlobRecord | null> {
    return blobs.readableBlob(this.ops, sha256, reader);
  }
  collectBlobs(input: CollectBlobsInput): Promise<CollectBlobsResult> {
    return collectBlobs(this.ops, input);
  }
  blobStats(): Promise<{ blobs: number; bytes: number; uploads: number }> {
    return blobs.blobStats(this.ops);
  }
  cancellationsSince(
    afterSeq: number | null,
    limit?: number,
  ): Promise<{ seq: number; items: Cancellation[] }> {
    return cancellationsSince(this.ops, afterSeq, limit);
  }
}
