import { CloseCode } from "../protocol/close-codes.ts";
import { FleetlinkError, invalid, isFleetlinkError } from "../protocol/errors.ts";
import { isId } from "../protocol/ids.ts";
import { MAX_ERROR_MESSAGE_CHARS, MAX_JSON_DEPTH, tooDeep, truncate } from "../protocol/limits.ts";
import { checkStreamRequest } from "../protocol/stream-schemas.ts";
import type { Instruction, NodeRecord, Reply } from "../protocol/types.ts";
import { encodePayload, NodeMethods, toWireInstruction, type WireReply } from "../protocol/wire.ts";
import {
  MAX_RENEWALS,
  type NewInstruction,
  type NewReply,
  type Store,
  type StoreReplyResult,
} from "../store/store.ts";
import { Channel, type Logger } from "../stream/channel.ts";
import { PeerTable } from "../stream/peers.ts";
import type { Transport } from "../stream/transport.ts";
import { Coalesced } from "../util/coalesce.ts";
import { GroupCommit } from "./group-commit.ts";

export interface NodeStreamsOptions {
  store: Store;
  /** Instructions in flight per node before the hub waits for replies. (Default: 32) */
  maxInflight: number;
  /** How long a node may take to acknowledge an instruction frame, in ms. (Default: 10000) */
  deliveryTimeoutMs: number;
  log: Logger;
  /**
   * A reply was stored here. With `reply`: it was stored already claimed for this replica's stream of its run
   * (see `holdsRun`), and must be sent there; without: the run streams have something to claim and deliver.
   */
  onReply: (reply?: Reply) => void;
  /** Whether this replica holds an open reply stream of the run (its replies are then stored claimed). */
  holdsRun?: (runId: string) => boolean;
  /** Time a new stream has to say hello before it is closed, in ms. (Default: 10000) */
  helloTimeoutMs?: number;
}

class Session {
  readonly inflight = new Set<string>();
  /** Slots promised to pushes still committing (see `NodeStreams.lease`). */
  reserved = 0;
  ready = false;
  readonly node: NodeRecord;
  readonly channel: Channel;
  /** When the last heartbeat not yet recorded in the store arrived (Date.now()), 0: none pending. */
  beatAt = 0;
  /** The interval that heartbeat asked for, if any. */
  beatInterval: number | undefined;
  /** The interval the node is judged by (from hello, then its heartbeats). */
  interval: number;
  /** The node's onlineUntil as last recorded by the store for this session. */
  onlineUntil: number | null;
  constructor(node: NodeRecord, channel: Channel) {
    this.node = node;
    this.channel = channel;
    this.interval = node.heartbeatIntervalMs;
    this.onlineUntil = node.onlineUntil;
  }
}

/** A heartbeat is recorded at most this long after it arrived (and within a quarter of the node's interval). */
const MAX_RENEW_DELAY_MS = 1000;
/** Most nodes a claimable scan lists before the replica claims for every node it holds instead. */
const SCAN_LIMIT = 10_000;
/** After a failed renewal (a store blip), the next try. */
const RENEW_RETRY_MS = 250;

/**
 * The node streams of one hub replica: who is connected here, what is in flight to each, and the dispatcher
 * that claims instructions for all of them in batched statements and pushes them down their streams.
 */
export class NodeStreams {
  private readonly peers = new PeerTable<Session>();
  /**
   * The newest stream of each node that has not said hello yet. A newer one closes it, so one credential holds
   * at most two streams here (its current one and one coming up), however often it dials.
   */
  private readonly arriving = new Map<string, Session>();
  private lastFence = 0;
  private fenceTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly scanner: Coalesced;
  private readonly dirty = new Set<string>();
  private allDirty = false;
  private readonly dispatcher: Coalesced;
  /** Replies from every stream here, stored together (one commit for many on PostgreSQL). */
  private readonly replies: GroupCommit<NewReply, StoreReplyResult>;
  private readonly o: NodeStreamsOptions;
  private renewTimer: ReturnType<typeof setTimeout> | undefined;
  private renewAt = Number.POSITIVE_INFINITY;
  private renewing = false;
  private closed = false;

  constructor(o: NodeStreamsOptions) {
    this.o = o;
    this.replies = new GroupCommit((items) => o.store.storeReplies(items));
    this.dispatcher = new Coalesced(
      () => this.dispatch(),
      (e) => o.log.warn({ err: String(e) }, "dispatch failed"),
    );
    this.scanner = new Coalesced(
      () => this.scan(),
      (e) => o.log.warn({ err: String(e) }, "claimable scan failed"),
    );
  }

  /**
   * Something may have become claimable for nodes here that no push through this replica woke (another
   * replica's push or release, a lease that ran out): ask the store which nodes have claimable work, and
   * claim for those of them connected here, not for every node held.
   */
  wakeClaimable(): void {
    if (this.peers.size > 0) this.scanner.trigger();
  }

  private async scan(): Promise<void> {
    const ids = await this.o.store.claimableNodes(SCAN_LIMIT);
    // As many as asked for: there may be more the store did not list (a backlog across a huge fleet), and a node
    // left out every time would starve. Claim for every node held here instead.
    if (ids.length >= SCAN_LIMIT) this.wake();
    else for (const id of ids) this.wake(id);
  }

  /**
   * Another replica committed something: maybe a push for nodes here, maybe a node's newer session there.
   * Claims for what became claimable, and soon (at most every 200 ms, the last change never skipped) closes
   * our streams whose session was superseded (claims already exclude them, since claims name the session).
   */
  remoteChanged(): void {
    this.wakeClaimable();
    if (this.fenceTimer || this.closed) return;
    this.fenceTimer = setTimeout(
      () => {
        this.fenceTimer = undefined;
        this.lastFence = Date.now();
        const ids = this.peers.peers();
        if (ids.length > 0)
          this.fence(ids).catch((e) => this.o.log.warn({ err: String(e) }, "fencing check failed"));
      },
      Math.max(0, this.lastFence + 200 - Date.now()),
    );
    this.fenceTimer.unref();
  }

  get connected(): number {
    return this.peers.size;
  }

  connectedIds(): string[] {
    return this.peers.peers();
  }

  /** Instructions delivered from this replica and not yet answered, over all its streams. */
  get inflight(): number {
    let n = 0;
    for (const s of this.peers.values()) n += s.inflight.size;
    return n;
  }

  /** Asks the dispatcher to claim for these nodes (or every connected node). */
  wake(nodeId?: string): void {
    if (nodeId === undefined) this.allDirty = true;
    else if (this.peers.get(nodeId)) this.dirty.add(nodeId);
    else return;
    this.dispatcher.trigger();
  }

  /** Serves one authenticated node connection until it closes. */
  accept(node: NodeRecord, transport: Transport): Channel {
    let session: Session | undefined;
    const channel = new Channel(transport, {
      log: this.o.log,
      onRequest: (method, body) => this.onRequest(session!, method, body),
    });
    session = new Session(node, channel);
    const s = session;
    const older = this.arriving.get(node.id);
    this.arriving.set(node.id, s);
    if (older) older.channel.close(CloseCode.replaced, "replaced by a newer stream");
    const helloTimer = setTimeout(() => {
      if (!s.ready) channel.close(CloseCode.policy, "no hello in time");
    }, this.o.helloTimeoutMs ?? 10_000);
    helloTimer.unref();
    channel.onClose(() => {
      clearTimeout(helloTimer);
      if (this.arriving.get(node.id) === s) this.arriving.delete(node.id);
      void this.onClose(s);
    });
    return channel;
  }

  /**
   * The push fast path: items for nodes whose stream is here and has room go to the store with this stream's
   * session as `leaseTo` (inserted already leased to it if it is still the node's current session), and
   * `settle` sends them down the stream as soon as the push committed: one transaction per push instead of
   * push, wake and claim. The rest wake the dispatcher as before. `settle(null)`: the push failed.
   */
  lease(items: readonly NewInstruction[]): {
    items: NewInstruction[];
    settle(pushed: readonly Instruction[] | null): void;
  } {
    const held: Session[] = [];
    const out = items.map((it) => {
      const s = this.peers.get(it.dst);
      if (!s?.ready || !s.channel.isOpen || s.inflight.size + s.reserved >= this.o.maxInflight) return it;
      s.reserved++;
      held.push(s);
      return { ...it, leaseTo: s.channel.id };
    });
    return {
      items: out,
      settle: (pushed) => {
        for (const s of held) s.reserved--;
        if (!pushed) return;
        const orphaned = new Map<string, string>();
        for (const ins of pushed) {
          if (ins.state !== "leased") {
            this.wake(ins.dst);
            continue;
          }
          const s = this.peers.get(ins.dst);
          if (s?.channel.isOpen && s.channel.id === ins.leaseOwner) this.send(s, ins);
          else if (ins.leaseOwner) orphaned.set(ins.dst, ins.leaseOwner);
        }
        // The stream closed while the push committed: give its leases back now rather than after the lease.
        for (const [nodeId, owner] of orphaned)
          void this.o.store
            .releaseInstructions({ nodeId, owner })
            .catch((e) =>
              this.o.log.warn({ err: String(e), node: nodeId }, "release failed; leases will expire"),
            );
      },
    };
  }

  /** Sends one instruction leased to this session. */
  private send(s: Session, ins: Instruction): void {
    s.inflight.add(ins.id);
    s.channel
      .request(NodeMethods.instruction, toWireInstruction(ins), { timeoutMs: this.o.deliveryTimeoutMs })
      .catch((e: unknown) => {
        // Not acknowledged: the stream is gone (release on close handles it) or the node is stuck (the lease
        // expires and the instruction is redelivered).
        this.o.log.debug({ err: String(e), instruction: ins.id }, "instruction not acknowledged");
      });
  }

  private async onRequest(s: Session, method: string, body: unknown): Promise<unknown> {
    // The same schemas describe these bodies in /openapi.json (src/protocol/stream-schemas.ts).
    const b = checkStreamRequest("node", method, body) as Record<string, unknown>;
    switch (method) {
      case NodeMethods.hello:
        return this.hello(s, b);
      case NodeMethods.heartbeat: {
        if (!s.ready) throw invalid("m", "say hello first");
        // Not a store write each: recorded with every other heartbeat this replica received, in one
        // statement, soon (see `renew`). A superseded session is found out there and its stream closed.
        this.beat(s, interval(b.heartbeatIntervalMs));
        return { onlineUntil: s.onlineUntil };
      }
      case NodeMethods.progress: {
        if (!s.ready) throw invalid("m", "say hello first");
        const ids = Array.isArray(b.ids)
          ? b.ids.filter((id) => isId(id) && s.inflight.has(id as string))
          : [];
        if (ids.length === 0) return { extended: [] };
        const extended = await this.o.store.extendLeases({
          nodeId: s.node.id,
          sessionId: s.channel.id,
          instructionIds: ids as string[],
        });
        return { extended };
      }
      case NodeMethods.reply:
        return this.reply(s, b);
      default:
        throw invalid("m", `unknown method ${method}`);
    }
  }

  private async hello(s: Session, b: Record<string, unknown>): Promise<unknown> {
    if (s.ready) throw invalid("m", "hello was already said on this stream");
    const working = Array.isArray(b.inflight) ? b.inflight.slice(0, this.o.maxInflight * 4).filter(isId) : [];
    // One transaction makes this stream the node's session (fencing out any other, on any replica), keeps
    // the leases the node says it still works on and gives back the rest (lost in flight): claimable now
    // rather than after their lease.
    const { node } = await this.o.store.openSession({
      nodeId: s.node.id,
      sessionId: s.channel.id,
      heartbeatIntervalMs: interval(b.heartbeatIntervalMs),
      keep: working,
    });
    if (!s.channel.isOpen) throw new FleetlinkError("STREAM_CLOSED", "stream closed during hello");
    if (this.arriving.get(s.node.id) === s) this.arriving.delete(s.node.id);
    const prev = this.peers.attach(s.node.id, s);
    if (prev) prev.channel.close(CloseCode.replaced, "replaced by a newer stream");
    for (const id of working) s.inflight.add(id);
    s.interval = node.heartbeatIntervalMs;
    s.onlineUntil = node.onlineUntil;
    s.ready = true;
    // Claim for it only if it has claimable work (what the store says, one cheap read for any number of
    // hellos): a fleet of 10,000 connecting made a claim statement per hello.
    this.wakeClaimable();
    return {
      nodeId: node.id,
      onlineUntil: node.onlineUntil,
      maxInflight: this.o.maxInflight,
      maxPayloadBytes: this.o.store.options.maxPayloadBytes,
      leaseMs: this.o.store.options.leaseMs,
    };
  }

  private async reply(s: Session, b: Record<string, unknown>): Promise<unknown> {
    const r = b as unknown as WireReply;
    if (!isId(r.id)) throw invalid("id", "must be a UUID");
    if (!isId(r.replyTo)) throw invalid("replyTo", "must be a UUID");
    if (!isId(r.runId)) throw invalid("runId", "must be a UUID");
    if (!s.ready) throw invalid("m", "say hello first");
    const error = checkReplyError(r.error);
    const max = this.o.store.options.maxPayloadBytes;
    let payload = error ? new Uint8Array(0) : encodePayload(r.payload);
    let outcome = error;
    // A result the store cannot take still gets an answer to the coordinator: an error reply in its place, so
    // an oversized or absurdly nested result is never silence (and the node is not asked to resend it).
    if (!error && (payload.byteLength > max || tooDeep(r.payload))) {
      outcome = {
        code: "FLEETLINK_E_PAYLOAD_TOO_LARGE",
        message:
          payload.byteLength > max
            ? `reply payload of ${payload.byteLength} bytes exceeds the limit of ${max}`
            : `reply payload nests deeper than ${MAX_JSON_DEPTH} levels`,
      };
      payload = new Uint8Array(0);
    }
    // The run's reply stream is here: store the reply already claimed for it and send it at once.
    const claimed = this.o.holdsRun?.(r.runId) ?? false;
    const res = await this.replies.add({
      id: r.id,
      runId: r.runId,
      nodeId: s.node.id,
      replyTo: r.replyTo,
      payload,
      error: outcome,
      claimed,
    });
    if (res.ok || (isFleetlinkError(res.error) && res.error.definite)) {
      // Stored, a duplicate, or refused for good: either way the node is done with it.
      s.inflight.delete(r.replyTo);
      this.wake(s.node.id);
    }
    if (res.ok && !res.duplicate) this.o.onReply(claimed ? res.reply : undefined);
    if (!res.ok) throw res.error;
    return { ok: true, duplicate: res.duplicate, ...(outcome && !error ? { replacedBy: outcome.code } : {}) };
  }

  private async onClose(s: Session): Promise<void> {
    // A replaced stream's late close does nothing: detach compares by identity.
    if (!this.peers.detach(s.node.id, s)) return;
    try {
      await this.o.store.releaseInstructions({ nodeId: s.node.id, owner: s.channel.id });
    } catch (e) {
      this.o.log.warn({ err: String(e), node: s.node.id }, "release on close failed; leases will expire");
    }
  }

  private async dispatch(): Promise<void> {
    const ids = this.allDirty ? this.peers.peers() : [...this.dirty];
    this.allDirty = false;
    this.dirty.clear();
    const byCapacity = new Map<number, { nodeId: string; sessionId: string }[]>();
    for (const id of ids) {
      const s = this.peers.get(id);
      if (!s?.ready || !s.channel.isOpen) continue;
      const cap = this.o.maxInflight - s.inflight.size - s.reserved;
      if (cap <= 0) continue;
      const group = byCapacity.get(cap);
      const entry = { nodeId: id, sessionId: s.channel.id };
      if (group) group.push(entry);
      else byCapacity.set(cap, [entry]);
    }
    for (const [cap, sessions] of byCapacity) {
      const got = await this.o.store.claimInstructions({ sessions, limit: cap });
      const orphaned = new Map<string, string>();
      for (const ins of got) {
        const s = this.peers.get(ins.dst);
        if (!s?.channel.isOpen || s.channel.id !== ins.leaseOwner) {
          if (ins.leaseOwner) orphaned.set(ins.dst, ins.leaseOwner);
          continue;
        }
        this.send(s, ins);
      }
      // The stream closed while we claimed: give its session's leases back now instead of waiting for them.
      for (const [nodeId, owner] of orphaned) await this.o.store.releaseInstructions({ nodeId, owner });
    }
  }

  /** A heartbeat arrived on this stream: schedule its recording. */
  private beat(s: Session, asked: number | undefined): void {
    s.beatAt = Date.now();
    s.beatInterval = asked;
    if (asked !== undefined) s.interval = asked;
    this.scheduleRenew(s.beatAt + this.renewDelay(s));
  }

  /**
   * How long a heartbeat may wait to be recorded: the node stays online as long as each beat is in the store
   * before the previous one's window (2 × interval) runs out, and beats come every interval, so a quarter
   * interval leaves room for a slow store.
   */
  private renewDelay(s: Session): number {
    return Math.min(MAX_RENEW_DELAY_MS, Math.floor(s.interval / 4));
  }

  private scheduleRenew(at: number): void {
    if (this.closed || at >= this.renewAt) return;
    clearTimeout(this.renewTimer);
    this.renewAt = at;
    this.renewTimer = setTimeout(
      () => {
        this.renewAt = Number.POSITIVE_INFINITY;
        void this.renew();
      },
      Math.max(0, at - Date.now()),
    );
    this.renewTimer.unref();
  }

  /**
   * Presence for every node here in one store statement per batch instead of a write per heartbeat: each
   * stream's latest heartbeat is recorded with its age (so the store's clock decides, not ours), guarded by
   * the stream's session. A stream the store did not renew was superseded (the node is connected elsewhere)
   * or its node unregistered: it is closed, as a refused heartbeat closed it before.
   */
  private async renew(): Promise<void> {
    if (this.renewing) return; // the running renewal schedules the next one when it ends
    this.renewing = true;
    let failed = false;
    try {
      const batch: [Session, number][] = [];
      for (const s of this.peers.values())
        if (s.ready && s.beatAt > 0 && s.channel.isOpen) batch.push([s, s.beatAt]);
      for (let i = 0; i < batch.length; i += MAX_RENEWALS) {
        const part = batch.slice(i, i + MAX_RENEWALS);
        const now = Date.now();
        const got = await this.o.store.renewSessions(
          part.map(([s, at]) => ({
            nodeId: s.node.id,
            sessionId: s.channel.id,
            heartbeatIntervalMs: s.beatInterval,
            ageMs: Math.max(0, now - at),
          })),
        );
        for (const [s, at] of part) {
          if (s.beatAt === at) s.beatAt = 0;
          const until = got.get(s.node.id);
          if (until !== undefined) s.onlineUntil = until;
          else if (s.channel.isOpen)
            s.channel.close(CloseCode.revoked, "session superseded or node unregistered");
        }
      }
    } catch (e) {
      // A store blip: the beats stay pending and are retried; the streams stay up (their nodes are alive).
      failed = true;
      this.o.log.warn({ err: String(e) }, "presence renewal failed; retrying");
    } finally {
      this.renewing = false;
      let next = Number.POSITIVE_INFINITY;
      for (const s of this.peers.values())
        if (s.ready && s.beatAt > 0) next = Math.min(next, s.beatAt + this.renewDelay(s));
      if (next < Number.POSITIVE_INFINITY)
        this.scheduleRenew(failed ? Math.max(next, Date.now() + RENEW_RETRY_MS) : next);
    }
  }

  /** Closes every stream here whose session is no longer its node's current one. */
  private async fence(ids: readonly string[]): Promise<void> {
    const current = await this.o.store.getSessions(ids);
    for (const id of ids) {
      const s = this.peers.get(id);
      const now = current.get(id);
      if (s?.ready && now !== undefined && now !== s.channel.id)
        s.channel.close(CloseCode.replaced, "session superseded by a newer stream");
    }
  }

  /** Closes this node's stream here, if any (it was unregistered). */
  closeNode(nodeId: string, reason: string): void {
    for (const s of [this.peers.get(nodeId), this.arriving.get(nodeId)])
      s?.channel.close(CloseCode.revoked, reason);
  }

  closeAll(): void {
    this.closed = true;
    clearTimeout(this.renewTimer);
    clearTimeout(this.fenceTimer);
    for (const s of [...this.peers.values(), ...this.arriving.values()])
      s.channel.close(CloseCode.goingAway, "hub shutting down");
  }
}

export const nodeAuthError = (): FleetlinkError =>
  new FleetlinkError("UNAUTHORIZED", "unknown node or bad credential");

/** A node's error outcome, checked and cut to size (a node may not fill the store with error text). */
const checkReplyError = (e: unknown): { code: string; message: string } | null => {
  if (e === undefined || e === null) return null;
  if (typeof e !== "object" || Array.isArray(e)) throw invalid("error", "must be an object or null");
  const { code, message } = e as { code?: unknown; message?: unknown };
  if (typeof code !== "string" || code.length === 0 || code.length > 200)
    throw invalid("error.code", "must be a non-empty string of at most 200 characters");
  if (typeof message !== "string") throw invalid("error.message", "must be a string");
  return { code, message: truncate(message, MAX_ERROR_MESSAGE_CHARS) };
};

/** A heartbeat interval a node asks to be judged by, if it is a sane one. */
const interval = (v: unknown): number | undefined =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 100 && v <= 3_600_000 ? v : undefined;
