import { randomUUID } from "node:crypto";
import { CloseCode } from "../../protocol/close-codes.ts";
import { FleetlinkError, invalid } from "../../protocol/errors.ts";
import type { Frame, WireError } from "../../protocol/frames.ts";
import { DEFAULT_MAX_PARKED_POLLS } from "../../protocol/node-http-schemas.ts";
import type { NodeRecord } from "../../protocol/types.ts";
import { NodeMethods, type WireInstruction } from "../../protocol/wire.ts";
import { type Liveness, watchTransport } from "../../stream/liveness.ts";
import { type Transport, TransportEvents } from "../../stream/transport.ts";
import { hashCredential, sameSecret } from "../http/auth.ts";
import type { NodeStreams } from "./node-streams.ts";

/** How a session ended: what a stream would have been closed with. */
export interface Ended {
  code: number;
  reason: string;
}

/** A one-way message for the node (an `evt` frame on the stream), carried by a poll answer. */
export interface PollEvent {
  m: string;
  b: unknown;
}

/** The answer to one HTTP request of a session: the stream's answer, its error, or the session's end. */
export type Answer = { ok: unknown } | { error: WireError } | { ended: Ended };

export interface HttpSessionsOptions {
  nodes: NodeStreams;
  /** The hub's one dead-peer rule, shared with its WebSockets: a session that stops polling is dropped by it. */
  liveness: Liveness;
  /** Polls parked at once on this replica, over all sessions, before new ones are refused. (Default: 10000) */
  maxParkedPolls?: number;
  /** How long an ended session's handle is remembered (so its node learns why it ended), in ms. (Default: 300000) */
  tombstoneMs?: number;
  /** Ended handles remembered at most. (Default: 10000) */
  maxTombstones?: number;
}

interface Parked {
  answer: (a: Answer) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

interface Tombstone extends Ended {
  nodeId: string;
  credentialHash: string;
  at: number;
}

/**
 * One HTTP session on the hub side: a Transport handed to `NodeStreams.accept` exactly like a WebSocket, so
 * hello, fencing, dispatch, leases, replies and refusals are the stream's code. The routes inject the node's
 * requests as frames and read the answers back; instructions the hub's channel sends wait here until a poll
 * takes them, and each is answered `accepted` when the node acknowledges it in a later poll.
 */
export class HttpSession extends TransportEvents implements Transport {
  /** The handle the node names in every request: random, so it cannot be guessed from a session id. */
  readonly handle = randomUUID();
  readonly polled = true;
  readonly node: NodeRecord;
  readonly credentialHash: string;
  private open = true;
  /** Instructions sent and not acknowledged, by instruction id, in delivery order; with their frame ids. */
  private readonly queue = new Map<string, { frames: string[]; instruction: WireInstruction }>();
  /**
   * Events (`cancel`) for the node, numbered, oldest first. Every poll answer carries all of them; they are
   * dropped only when a poll arrives after an answer carrying them was written in full (the implicit ack: the
   * node polls again once it has read an answer). An answer to a superseded poll, or to one whose client left,
   * must not lose them: the node never reads it.
   */
  private events: { seq: number; event: PollEvent }[] = [];
  private eventSeq = 0;
  /** Highest event seq an answer written in full carried: the session's next poll acknowledges up to it. */
  private eventsWritten = 0;
  /** HTTP requests waiting for the channel's answer, by the frame id they were injected with. */
  private readonly pending = new Map<string, (a: Answer) => void>();
  private parked: Parked | undefined;
  /** The hub answered this session's hello: polls are served from then on. */
  private greeted = false;
  /** The frame being injected: a malformed-frame error (no id) the channel writes meanwhile answers it. */
  private injecting: string | undefined;
  private flushing = false;
  private readonly registry: HttpSessions;

  constructor(registry: HttpSessions, node: NodeRecord, credentialHash: string) {
    super();
    this.registry = registry;
    this.node = node;
    this.credentialHash = credentialHash;
  }

  get isOpen(): boolean {
    return this.open;
  }

  /** Frames from the hub's channel: instruction requests to queue, answers to the node's requests. */
  send(frame: string): void {
    if (!this.open) return;
    const f = JSON.parse(frame) as Frame;
    if (f.t === "req" && f.m === NodeMethods.instruction) {
      const ins = f.b as WireInstruction;
      const q = this.queue.get(ins.id);
      if (q) {
        // Delivered again (its lease ran out): the newest copy, with its attempts.
        q.frames.push(f.id);
        q.instruction = ins;
      } else this.queue.set(ins.id, { frames: [f.id], instruction: ins });
      this.flushSoon();
    } else if (f.t === "evt") {
      if (f.m === NodeMethods.cancel) this.unqueue((f.b as { ids: string[] }).ids);
      this.events.push({ seq: ++this.eventSeq, event: { m: f.m, b: f.b } });
      this.flushSoon();
    } else if (f.t === "res" || f.t === "err") {
      const id = f.id ?? this.injecting;
      const answer = id === undefined ? undefined : this.pending.get(id);
      if (!answer) return;
      this.pending.delete(id!);
      answer(f.t === "res" ? { ok: f.b } : { error: f.e });
    }
  }

  close(code: number = CloseCode.normal, reason = ""): void {
    if (!this.open) return;
    this.open = false;
    const ended = { ended: { code, reason } };
    this.unpark(ended);
    for (const answer of this.pending.values()) answer(ended);
    this.pending.clear();
    this.queue.clear();
    this.events = [];
    this.registry.ended(this, { code, reason });
    this.emitClose(code, reason);
  }

  terminate(): void {
    this.close(CloseCode.abnormal, "session dropped");
  }

  /** The liveness probe: answer the parked poll now (empty), so the node polls again at once. */
  ping(): void {
    this.unpark({ ok: [] });
  }

  /** A node request (`m` with its stream body), served by the hub's channel as on the stream. */
  request(method: string, body: unknown): Promise<Answer> {
    if (!this.open) return Promise.resolve(this.registry.endOf(this));
    const id = randomUUID();
    const text = JSON.stringify({ t: "req", id, m: method, b: body });
    return new Promise((resolve) => {
      this.pending.set(id, (a) => {
        if (method === NodeMethods.hello && "ok" in a) this.greeted = true;
        resolve(a);
      });
      this.inject(text, id);
    });
  }

  /**
   * A poll: acknowledges `acks` (and the events an answer written before it carried), then answers with every
   * instruction not yet acknowledged, or parks until one comes, `waitMs` passes, a newer poll arrives or the
   * session ends. `cancel` unparks it (its client left).
   */
  poll(acks: readonly string[], waitMs: number): { answer: Promise<Answer>; cancel: () => void } {
    // As on the stream, where every request before hello is refused: nothing is delivered to a session yet.
    if (this.open && !this.greeted) throw invalid("session", "say hello first (POST /v1/node/hello)");
    this.emitAlive();
    for (const id of acks) {
      const q = this.queue.get(id);
      if (!q) continue;
      this.queue.delete(id);
      for (const frame of q.frames)
        this.inject(JSON.stringify({ t: "res", id: frame, b: { accepted: true } }));
    }
    // Before the older poll is answered below: what its answer carries is not acknowledged by this poll.
    if (this.eventsWritten > 0) this.events = this.events.filter((e) => e.seq > this.eventsWritten);
    // One parked poll per session: the newer one takes over.
    this.unpark({ ok: [] });
    if (!this.open) return { answer: Promise.resolve(this.registry.endOf(this)), cancel: () => {} };
    if (this.queue.size > 0 || this.events.length > 0 || waitMs === 0)
      return { answer: Promise.resolve({ ok: this.unacked() }), cancel: () => {} };
    if (!this.registry.park())
      throw new FleetlinkError("RATE_LIMITED", "too many parked polls on this replica: retry later");
    let parked: Parked | undefined;
    const answer = new Promise<Answer>((resolve) => {
      parked = { answer: resolve, timer: undefined };
      parked.timer = setTimeout(() => this.unpark({ ok: [] }), waitMs);
      this.parked = parked;
    });
    return {
      answer,
      // Answered (empty) so the route's handler ends; its client is gone, so nothing is written.
      cancel: () => {
        if (this.parked === parked) this.unpark({ ok: [] });
      },
    };
  }

  /**
   * Events not yet acknowledged, for a poll answer (the route calls this as it answers), and `written`, which
   * the route calls once that answer was written in full: the session's next poll then acknowledges them.
   */
  offerEvents(): { events: PollEvent[]; written: () => void } {
    const upTo = this.events.at(-1)?.seq ?? 0;
    return {
      events: this.events.map((e) => e.event),
      written: () => {
        this.eventsWritten = Math.max(this.eventsWritten, upTo);
      },
    };
  }

  /**
   * Instructions that ended before the node took them from a poll: no longer offered, and their delivery is
   * settled (as if acknowledged), since nothing is left to deliver.
   */
  private unqueue(ids: readonly string[]): void {
    const frames: string[] = [];
    for (const id of ids) {
      const q = this.queue.get(id);
      if (!q) continue;
      this.queue.delete(id);
      frames.push(...q.frames);
    }
    // Not from inside the channel's write that brought the event: answered right after it.
    if (frames.length > 0)
      queueMicrotask(() => {
        for (const frame of frames)
          this.inject(JSON.stringify({ t: "res", id: frame, b: { accepted: true } }));
      });
  }

  private unacked(): WireInstruction[] {
    return [...this.queue.values()].map((q) => q.instruction);
  }

  /** Answers the parked poll (or just drops it: its client left). */
  private unpark(a: Answer | undefined): void {
    const p = this.parked;
    if (!p) return;
    this.parked = undefined;
    clearTimeout(p.timer);
    this.registry.unpark();
    if (a) p.answer(a);
  }

  /** Instructions several dispatches send in one turn go out in one answer. */
  private flushSoon(): void {
    if (this.flushing || !this.parked) return;
    this.flushing = true;
    setImmediate(() => {
      this.flushing = false;
      if (this.queue.size > 0 || this.events.length > 0) this.unpark({ ok: this.unacked() });
    });
  }

  private inject(text: string, id?: string): void {
    const outer = this.injecting;
    this.injecting = id;
    try {
      this.emitMessage(text);
    } finally {
      this.injecting = outer;
    }
  }
}

/**
 * The HTTP sessions of one hub replica: opens them (after the routes checked the credential), finds them by
 * handle for each request (comparing the credential with the one cached at open: no store read per poll), and
 * remembers for a while how each ended, so a node's late request learns the close code it must act on.
 */
export class HttpSessions {
  private readonly live = new Map<string, HttpSession>();
  private readonly tombstones = new Map<string, Tombstone>();
  private parkedPolls = 0;
  private readonly o: Required<Omit<HttpSessionsOptions, "nodes" | "liveness">> & HttpSessionsOptions;

  constructor(o: HttpSessionsOptions) {
    this.o = { maxParkedPolls: DEFAULT_MAX_PARKED_POLLS, tombstoneMs: 300_000, maxTombstones: 10_000, ...o };
  }

  /** Sessions open on this replica. */
  get size(): number {
    return this.live.size;
  }

  /** Polls parked on this replica now. */
  get parked(): number {
    return this.parkedPolls;
  }

  /** Opens a session for an authenticated node; it must say hello within the hub's hello timeout. */
  open(node: NodeRecord, credentialHash: string): HttpSession {
    const s = new HttpSession(this, node, credentialHash);
    this.live.set(s.handle, s);
    watchTransport(this.o.liveness, s);
    this.o.nodes.accept(node, s);
    return s;
  }

  /**
   * The session of this handle if the credential is its node's; how it ended if it ended; `unknown` if this
   * replica never had it (or forgot it). Throws UNAUTHORIZED for another node's credential.
   */
  find(handle: string, nodeId: string, credential: string): HttpSession | Ended {
    const s = this.live.get(handle) ?? this.tombstones.get(handle);
    if (!s)
      return {
        code: CloseCode.goingAway,
        reason: "this hub replica does not know the session: open a new one",
      };
    const owner = s instanceof HttpSession ? s.node.id : s.nodeId;
    if (owner !== nodeId || !sameSecret(hashCredential(credential), s.credentialHash))
      throw new FleetlinkError("UNAUTHORIZED", "unknown node or bad credential");
    return s instanceof HttpSession ? s : { code: s.code, reason: s.reason };
  }

  /** How a session ended (or that it did not yet). */
  endOf(s: HttpSession): Answer {
    const t = this.tombstones.get(s.handle);
    return { ended: t ? { code: t.code, reason: t.reason } : { code: CloseCode.abnormal, reason: "" } };
  }

  /** Ends every session (the hub is closing; NodeStreams.closeAll has closed those it holds). */
  close(): void {
    for (const s of [...this.live.values()]) s.close(CloseCode.goingAway, "hub shutting down");
  }

  /** @internal A session ended: remember how, for a while. */
  ended(s: HttpSession, e: Ended): void {
    this.live.delete(s.handle);
    const now = Date.now();
    this.tombstones.set(s.handle, { ...e, nodeId: s.node.id, credentialHash: s.credentialHash, at: now });
    for (const [handle, t] of this.tombstones) {
      if (this.tombstones.size <= this.o.maxTombstones && now - t.at <= this.o.tombstoneMs) break;
      this.tombstones.delete(handle);
    }
  }

  /** @internal Takes a parking slot, if one is free. */
  park(): boolean {
    if (this.parkedPolls >= this.o.maxParkedPolls) return false;
    this.parkedPolls++;
    return true;
  }

  /** @internal Gives a parking slot back. */
  unpark(): void {
    this.parkedPolls--;
  }
}
