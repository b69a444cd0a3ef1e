import { CloseCode } from "../../protocol/close-codes.ts";
import { FleetlinkError, invalid } from "../../protocol/errors.ts";
import { isId } from "../../protocol/ids.ts";
import { checkStreamRequest } from "../../protocol/stream-schemas.ts";
import type { Instruction, NodeRecord, Reply } from "../../protocol/types.ts";
import { HUB_FEATURES, IMPLICIT_PROTOCOL, SUPPORTED_PROTOCOLS } from "../../protocol/version.ts";
import { NodeMethods } from "../../protocol/wire.ts";
import type { NewInstruction, Store } from "../../store/store.ts";
import { Channel, type Logger } from "../../stream/channel.ts";
import { PeerTable } from "../../stream/peers.ts";
import type { Transport } from "../../stream/transport.ts";
import { packageVersion } from "../../util/package-version.ts";
import { Cancellations } from "./cancellations.ts";
import { Dispatcher } from "./dispatcher.ts";
import { Renewals } from "./renewals.ts";
import { ReplyIntake } from "./reply-intake.ts";
import { DEFER_ACK_MS, heartbeatInterval, Session } from "./session.ts";

export interface NodeStreamsOptions {
  store: Store;
  /** Features announced in hello, when this hub serves fewer than HUB_FEATURES (no blobs, no presign). */
  features?: readonly string[];
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
  /** The dead-peer interval (HubOptions.pingIntervalMs), announced in the hello answer. (Default: 10000) */
  pingIntervalMs?: number;
  /** Node protocol versions a hello may name; others are refused. (Default: SUPPORTED_PROTOCOLS) */
  protocols?: readonly number[];
  /** Instructions a `cancel` event told their node about, by code (counted on /metrics). (Default: none) */
  onCancelled?: (code: string, count: number) => void;
}

/**
 * The node streams of one hub replica: who is connected here (sessions, fenced by the store), and the parts
 * that serve them: the dispatcher (dispatcher.ts) sends them instructions, the reply intake (reply-intake.ts)
 * stores their replies, the renewals (renewals.ts) record their heartbeats in batches.
 */
export class NodeStreams {
  private readonly peers = new PeerTable<Session>();
  /**
   * The newest stream of each node that has not said hello yet. A newer one closes it, so one credential holds
   * at most two streams here (its current one and one coming up), however often it dials.
   */
  private readonly arriving = new Map<string, Session>();
  /** Streams whose node left: closing, and never live again. */
  private readonly left = new WeakSet<Session>();
  private lastFence = 0;
  private fenceTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly dispatcher: Dispatcher;
  private readonly cancellations: Cancellations;
  private readonly replies: ReplyIntake;
  private readonly renewals: Renewals;
  private readonly o: NodeStreamsOptions;
  private closed = false;

  constructor(o: NodeStreamsOptions) {
    this.o = o;
    this.dispatcher = new Dispatcher({
      store: o.store,
      peers: this.peers,
      maxInflight: o.maxInflight,
      deliveryTimeoutMs: o.deliveryTimeoutMs,
      log: o.log,
    });
    this.cancellations = new Cancellations({
      store: o.store,
      peers: this.peers,
      log: o.log,
      onCancelled: o.onCancelled,
      freed: (nodeId) => this.dispatcher.freed(nodeId),
    });
    this.replies = new ReplyIntake({
      store: o.store,
      onReply: o.onReply,
      holdsRun: o.holdsRun,
      onSettled: (s, id) => {
        s.inflight.delete(id);
        this.dispatcher.freed(s.node.id);
      },
    });
    this.renewals = new Renewals(o.store, o.log, () => this.peers.values());
  }

  /** See Dispatcher.wakeClaimable; and reads the cancellation log (the periodic poll calls this too). */
  wakeClaimable(): void {
    this.dispatcher.wakeClaimable();
    this.cancelled();
  }

  /**
   * The store changed (here or on another replica): instructions held by nodes here may have ended. Reads the
   * cancellation log (coalesced) and tells their nodes.
   */
  cancelled(): void {
    // Also with no node here: the entries read now are remembered for the hellos of nodes that come here later.
    if (!this.closed) this.cancellations.wake();
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

  /** Instructions delivered from this replica and not yet answered, per connected node. */
  inflightByNode(): Map<string, number> {
    const m = new Map<string, number>();
    for (const id of this.peers.peers()) {
      const s = this.peers.get(id);
      if (s) m.set(id, s.inflight.size);
    }
    return m;
  }

  /** Asks the dispatcher to claim for these nodes (or every connected node). */
  wake(nodeId?: string): void {
    this.dispatcher.wake(nodeId);
  }

  /** See Dispatcher.lease: the push fast path. */
  lease(items: readonly NewInstruction[]): {
    items: NewInstruction[];
    settle(pushed: readonly Instruction[] | null): void;
  } {
    return this.dispatcher.lease(items);
  }

  /** Serves one authenticated node connection until it closes. */
  accept(node: NodeRecord, transport: Transport): Channel {
    let session: Session | undefined;
    const channel = new Channel(transport, {
      log: this.o.log,
      onRequest: (method, body) => this.onRequest(session!, method, body),
      // A reply's acknowledgement rides with the next instruction (the node is not waiting on it to go on).
      deferAnswers: { methods: [NodeMethods.reply], maxDelayMs: DEFER_ACK_MS },
    });
    session = new Session(node, channel);
    session.polled = transport.polled === true;
    if (transport.expectEvery) session.expectEvery = (ms) => transport.expectEvery!(ms);
    const s = session;
    const older = this.arriving.get(node.id);
    this.arriving.set(node.id, s);
    if (older) older.channel.close(CloseCode.replaced, "replaced by a newer stream");
    s.helloTimer = setTimeout(() => {
      if (!s.ready) channel.close(CloseCode.policy, "no hello in time");
    }, this.o.helloTimeoutMs ?? 10_000);
    s.helloTimer.unref();
    channel.onClose(() => {
      clearTimeout(s.helloTimer);
      if (this.arriving.get(node.id) === s) this.arriving.delete(node.id);
      void this.onClose(s);
    });
    return channel;
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
        // statement, soon (see renewals.ts). A superseded session is found out there and its stream closed.
        this.renewals.beat(s, heartbeatInterval(b.heartbeatIntervalMs));
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
        return this.replies.take(s, b);
      case NodeMethods.leave:
        return this.leave(s);
      default:
        throw invalid("m", `unknown method ${method}`);
    }
  }

  private async hello(s: Session, b: Record<string, unknown>): Promise<unknown> {
    if (s.ready || this.left.has(s)) throw invalid("m", "hello was already said on this stream");
    const protocol = typeof b.protocol === "number" ? b.protocol : IMPLICIT_PROTOCOL;
    const protocols = this.o.protocols ?? SUPPORTED_PROTOCOLS;
    if (!protocols.includes(protocol)) {
      // Refused before the store is touched: the node's record and any session it has elsewhere stay as they
      // are. The close waits for the error frame, which Channel writes once this rejection reaches it.
      setImmediate(() => s.channel.close(CloseCode.unsupportedProtocol, `protocol ${protocol} unsupported`));
      throw new FleetlinkError(
        "UNSUPPORTED_PROTOCOL",
        `node speaks protocol ${protocol}; this hub speaks ${protocols.join(", ")}`,
        { field: "protocol" },
      );
    }
    const agent = b.agent as { name: string; version: string } | undefined;
    const working = Array.isArray(b.inflight) ? b.inflight.slice(0, this.o.maxInflight * 4).filter(isId) : [];
    // One transaction makes this stream the node's session (fencing out any other, on any replica), keeps
    // the leases the node says it still works on and gives back the rest (lost in flight): claimable now
    // rather than after their lease.
    const { node } = await this.o.store.openSession({
      nodeId: s.node.id,
      sessionId: s.channel.id,
      heartbeatIntervalMs: heartbeatInterval(b.heartbeatIntervalMs),
      keep: working,
      agent,
      protocol,
    });
    if (!s.channel.isOpen) throw new FleetlinkError("STREAM_CLOSED", "stream closed during hello");
    if (this.arriving.get(s.node.id) === s) this.arriving.delete(s.node.id);
    const prev = this.peers.attach(s.node.id, s);
    if (prev) prev.channel.close(CloseCode.replaced, "replaced by a newer stream");
    for (const id of working) s.inflight.add(id);
    s.interval = node.heartbeatIntervalMs;
    // Its heartbeats are its signs of life: the hub pings it only when one is late, not between them.
    s.expectEvery(s.interval);
    // Not over the HTTP node API (a transport with its own liveness): its polls acknowledge instruction requests.
    s.instructionEvents =
      Array.isArray(b.features) &&
      b.features.includes("instructions") &&
      (this.o.features ?? HUB_FEATURES).includes("instructions") &&
      !s.polled;
    // Ids it still works on that ended meanwhile (known from the log): cancelled before the hello answer.
    this.cancellations.atHello(s, working);
    s.onlineUntil = node.onlineUntil;
    s.ready = true;
    clearTimeout(s.helloTimer);
    // Claim for it only if it has claimable work (what the store says, one cheap read for any number of
    // hellos): a fleet of 10,000 connecting made a claim statement per hello. The cancellation log is not read
    // for it: atHello told it what the log said so far, and later entries reach it with the next read.
    this.dispatcher.wakeClaimable();
    return {
      nodeId: node.id,
      name: node.name,
      onlineUntil: node.onlineUntil,
      maxInflight: this.o.maxInflight,
      maxPayloadBytes: this.o.store.options.maxPayloadBytes,
      leaseMs: this.o.store.options.leaseMs,
      protocol,
      protocols: [...protocols],
      features: [...(this.o.features ?? HUB_FEATURES)],
      hub: { version: packageVersion() },
      pingIntervalMs: this.o.pingIntervalMs ?? 10_000,
    };
  }

  /**
   * A graceful leave: the node goes offline now (its calls end NODE_UNAVAILABLE at the next sweep, not after
   * its heartbeat window) and its leases go back, in one store operation that does nothing if this stream
   * was superseded meanwhile. The stream is closed (1000) once the answer is written.
   */
  private async leave(s: Session): Promise<unknown> {
    if (!s.ready) throw invalid("m", "say hello first");
    // Not ready: nothing more is dispatched to it, its heartbeats are refused, fencing skips it.
    s.ready = false;
    this.left.add(s);
    try {
      await this.o.store.leaveSession({ nodeId: s.node.id, sessionId: s.channel.id });
    } catch (e) {
      s.ready = true;
      this.left.delete(s);
      throw e;
    }
    s.inflight.clear();
    setImmediate(() => s.channel.close(CloseCode.normal, "node left"));
    return { left: true };
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
    this.renewals.close();
    this.dispatcher.close();
    this.cancellations.close();
    clearTimeout(this.fenceTimer);
    for (const s of [...this.peers.values(), ...this.arriving.values()])
      s.channel.close(CloseCode.goingAway, "hub shutting down");
  }
}
