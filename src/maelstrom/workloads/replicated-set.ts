import type { MaelstromNode } from "../node.ts";
import type { Message } from "../protocol.ts";

export interface ReplicatedSetOptions {
  /** How often the root sends what is new to every other node, in ms. (Default: 300) */
  rootFlushMs?: number;
  /** How long a node collects its own new values before sending them to the root, in ms. (Default: 2) */
  leafFlushMs?: number;
  /** First resend delay for unacknowledged data, in ms; doubles (with jitter) up to 3 s. (Default: 1500) */
  resendMs?: number;
  /** A node with nothing to send acknowledges the root's data on its own after this long, in ms. (Default: 800) */
  idleAckMs?: number;
}

const jitter = (ms: number) => ms * (0.75 + Math.random() * 0.5);

/** When each not-yet-acknowledged send went out, so a resend is timed from the oldest one. */
class Unacked {
  private sends: { end: number; at: number }[] = [];
  backoff = 0;
  record(end: number, at: number): void {
    this.sends.push({ end, at });
  }
  ack(upTo: number): void {
    const before = this.sends.length;
    this.sends = this.sends.filter((s) => s.end > upTo);
    if (this.sends.length < before) this.backoff = 0;
  }
  overdue(now: number, baseMs: number): boolean {
    const first = this.sends[0];
    return first !== undefined && now - first.at > jitter(Math.min(3000, baseMs * 2 ** this.backoff));
  }
  resent(end: number, at: number): void {
    this.backoff++;
    this.sends = [{ end, at }];
  }
}

/**
 * A grow-only set replicated over a star: every node sends its clients' new values to the root (the lowest
 * node id), and the root sends each node, in one batched message per period, everything it has not sent it
 * yet. Both directions are logs with cumulative acknowledgements piggybacked on the traffic that flows
 * anyway, so acknowledging costs no extra messages in steady state; anything unacknowledged is resent with
 * exponential backoff and jitter, which is how the set converges after partitions heal. A duplicate is
 * always acknowledged (the ack is a log position, not a per-value reply).
 *
 * Maelstrom runs each node single-threaded and every handler here is synchronous, so the shared state is
 * never seen half-updated.
 */
export class ReplicatedSet<V> {
  readonly values = new Map<string, V>();
  private readonly node: MaelstromNode;
  private readonly o: Required<ReplicatedSetOptions>;
  private readonly keyOf: (v: V) => string;
  // as a leaf
  private readonly own: V[] = [];
  private ownSent = 0;
  private ownAcked = 0;
  private rootPrefix = 0;
  private rootPrefixSent = 0;
  private lastUp = 0;
  private readonly upUnacked = new Unacked();
  private leafTimer: ReturnType<typeof setTimeout> | null = null;
  // as the root
  private readonly log: V[] = [];
  private readonly leaves = new Map<
    string,
    { sent: number; acked: number; upAck: number; upAckSent: number; unacked: Unacked }
  >();
  private ticker: ReturnType<typeof setInterval> | null = null;

  constructor(node: MaelstromNode, keyOf: (v: V) => string, o: ReplicatedSetOptions = {}) {
    this.node = node;
    this.keyOf = keyOf;
    this.o = {
      rootFlushMs: o.rootFlushMs ?? 300,
      leafFlushMs: o.leafFlushMs ?? 2,
      resendMs: o.resendMs ?? 1500,
      idleAckMs: o.idleAckMs ?? 800,
    };
    node.on("rs_up", (m) => this.onUp(m));
    node.on("rs_down", (m) => this.onDown(m));
  }

  get root(): string {
    return [...this.node.nodeIds].sort()[0] ?? this.node.id;
  }

  private get isRoot(): boolean {
    return this.node.id === this.root;
  }

  /** Starts the timers (after init). */
  start(): void {
    if (this.ticker) return;
    for (const p of this.node.peers)
      if (this.isRoot)
        this.leaves.set(p, { sent: 0, acked: 0, upAck: 0, upAckSent: 0, unacked: new Unacked() });
    this.ticker = setInterval(() => this.tick(), this.isRoot ? this.o.rootFlushMs : 50);
    this.ticker.unref?.();
  }

  /** Adds a value from a client of this node. Returns false if it was already known. */
  add(v: V): boolean {
    const k = this.keyOf(v);
    if (this.values.has(k)) return false;
    this.values.set(k, v);
    if (this.node.peers.length === 0) return true;
    if (this.isRoot) this.log.push(v);
    else {
      this.own.push(v);
      this.leafTimer ??= setTimeout(() => {
        this.leafTimer = null;
        this.flushUp(false);
      }, this.o.leafFlushMs);
    }
    return true;
  }

  private learn(v: V): void {
    const k = this.keyOf(v);
    if (this.values.has(k)) return;
    this.values.set(k, v);
    if (this.isRoot) this.log.push(v);
  }

  private flushUp(resend: boolean): void {
    const from = resend ? this.ownAcked : this.ownSent;
    const values = this.own.slice(from);
    const now = Date.now();
    this.node.send(this.root, { type: "rs_up", from, values, ack: this.rootPrefix });
    if (resend) this.upUnacked.resent(this.own.length, now);
    else if (values.length > 0) this.upUnacked.record(this.own.length, now);
    this.ownSent = this.own.length;
    this.rootPrefixSent = this.rootPrefix;
    this.lastUp = now;
  }

  private tick(): void {
    const now = Date.now();
    if (!this.isRoot) {
      if (this.upUnacked.overdue(now, this.o.resendMs)) this.flushUp(true);
      else if (this.rootPrefix > this.rootPrefixSent && now - this.lastUp > this.o.idleAckMs) {
        // Nothing to send for a while: a bare ack, so the root does not resend what we have.
        this.flushUp(false);
      }
      return;
    }
    for (const [leaf, s] of this.leaves) {
      const overdue = s.unacked.overdue(now, this.o.resendMs);
      const fresh = s.sent < this.log.length || s.upAck > s.upAckSent;
      if (!fresh && !overdue) continue;
      const from = overdue ? s.acked : s.sent;
      this.node.send(leaf, { type: "rs_down", from, values: this.log.slice(from), upAck: s.upAck });
      if (overdue) s.unacked.resent(this.log.length, now);
      else if (s.sent < this.log.length) s.unacked.record(this.log.length, now);
      s.sent = this.log.length;
      s.upAckSent = s.upAck;
    }
  }

  private onUp(m: Message): void {
    const s = this.leaves.get(m.src);
    if (!s) return;
    const from = Number(m.body.from);
    const values = (m.body.values as V[]) ?? [];
    for (const [i, v] of values.entries()) {
      this.learn(v);
      if (from + i === s.upAck) s.upAck++;
    }
    const ack = Number(m.body.ack);
    if (ack > s.acked) {
      s.acked = Math.min(ack, this.log.length);
      s.unacked.ack(s.acked);
    }
  }

  private onDown(m: Message): void {
    const from = Number(m.body.from);
    const values = (m.body.values as V[]) ?? [];
    for (const v of values) this.learn(v);
    if (from <= this.rootPrefix) this.rootPrefix = Math.max(this.rootPrefix, from + values.length);
    const upAck = Number(m.body.upAck);
    if (upAck > this.ownAcked) {
      this.ownAcked = Math.min(upAck, this.own.length);
      this.upUnacked.ack(this.ownAcked);
    }
  }
}
