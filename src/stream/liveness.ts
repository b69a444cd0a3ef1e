import { CloseCode } from "../protocol/close-codes.ts";
import type { Transport } from "./transport.ts";

/**
 * The one dead-peer rule, used by the hub for every socket, by the node agent and by the coordinator's run
 * stream (each with its own numbers): **a peer silent for more than `probeAfterMs` is probed (pinged), and
 * one silent for more than `dropAfterMs` is dropped.** Anything heard counts as a sign of life (a frame, a
 * pong, the peer's own ping), so a peer that talks is never pinged and an idle one costs a ping per probe.
 */
export interface LivenessRule {
  /** Silence after which the peer is pinged, in ms. */
  probeAfterMs: number;
  /** Silence after which the peer is dropped, in ms (greater than probeAfterMs). */
  dropAfterMs: number;
  /**
   * How often silence is judged, in ms: a dead peer is dropped within dropAfterMs + checkMs.
   * (Default: half the smaller of probeAfterMs and dropAfterMs − probeAfterMs, at least 10)
   */
  checkMs?: number;
}

/** What a rule needs from a peer: a way to ask for a sign of life, and a way to give up on it. */
export interface LivePeer {
  ping(): void;
  drop(why: string): void;
}

/** One watched peer. */
export interface Watched {
  /** A sign of life arrived. */
  heard(): void;
  /** A suspicion (a request went unanswered): ping now, and drop the peer if nothing is heard within `withinMs`. */
  probe(withinMs: number): void;
  /**
   * The peer said it speaks at least every `intervalMs` (a node's heartbeats): its silences are judged by that
   * when it is longer than the rule's, so the side that hears heartbeats sends no pings between them.
   */
  expectEvery(intervalMs: number): void;
  /** Stops watching (the connection closed). */
  stop(): void;
}

/** Judges any number of peers by one rule on one timer (a hub with 10,000 sockets runs one timer, not 10,000). */
export class Liveness {
  readonly rule: Required<LivenessRule>;
  private readonly watched = new Set<Watch>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private lastTick = 0;

  constructor(rule: LivenessRule) {
    if (!(rule.dropAfterMs > rule.probeAfterMs && rule.probeAfterMs > 0))
      throw new RangeError("liveness: need 0 < probeAfterMs < dropAfterMs");
    const gap = Math.min(rule.probeAfterMs, rule.dropAfterMs - rule.probeAfterMs);
    this.rule = { checkMs: Math.max(10, Math.floor(gap / 2)), ...rule };
  }

  get size(): number {
    return this.watched.size;
  }

  /** Judges `peer` by the watcher's rule, or by its own probe and drop times (checked on the same timer). */
  watch(peer: LivePeer, own?: { probeAfterMs: number; dropAfterMs: number }): Watched {
    const w = new Watch(own ? { ...this.rule, ...own } : this.rule, peer, (x) => this.unwatch(x));
    this.watched.add(w);
    if (!this.timer) {
      this.lastTick = Date.now();
      this.timer = setInterval(() => this.tick(), this.rule.checkMs);
      this.timer.unref?.();
    }
    return w;
  }

  /** Stops judging every peer (the peers themselves are left alone). */
  close(): void {
    for (const w of [...this.watched]) w.stop();
  }

  private unwatch(w: Watch): void {
    this.watched.delete(w);
    if (this.watched.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private tick(): void {
    const now = Date.now();
    // A tick that comes late means our own event loop was blocked: the silence measured across the block is
    // not the peers' fault, so this tick only probes. Judged after the I/O phase (setImmediate), so a pong that
    // arrived while the loop was blocked has been read first.
    const late = now - this.lastTick > 1.5 * this.rule.checkMs + 10;
    this.lastTick = now;
    setImmediate(() => {
      for (const w of [...this.watched]) w.judge(late);
    });
  }
}

class Watch implements Watched {
  private lastHeard = Date.now();
  /** Signs of life so far: compared, not timed, since a pong can come back within the millisecond of its ping. */
  private signs = 0;
  /** `signs` when the last ping went out: a ping is sent once per silence. */
  private pingedAt = -1;
  private probeTimer: ReturnType<typeof setTimeout> | undefined;
  private done = false;
  private rule: Required<LivenessRule>;
  private readonly peer: LivePeer;
  private readonly release: (w: Watch) => void;

  /** The watcher's rule; `rule` may be longer (expectEvery). */
  private readonly base: Required<LivenessRule>;

  constructor(rule: Required<LivenessRule>, peer: LivePeer, release: (w: Watch) => void) {
    this.base = rule;
    this.rule = rule;
    this.peer = peer;
    this.release = release;
  }

  heard(): void {
    this.lastHeard = Date.now();
    this.signs++;
  }

  judge(late: boolean): void {
    if (this.done) return;
    const now = Date.now();
    if (late && now - this.lastHeard > this.rule.probeAfterMs) {
      // The peer gets a fresh probe window from now.
      this.lastHeard = now - this.rule.probeAfterMs;
      this.ping();
      return;
    }
    const silent = now - this.lastHeard;
    if (silent > this.rule.dropAfterMs) this.drop(`silent for ${silent} ms`);
    else if (silent > this.rule.probeAfterMs && this.pingedAt !== this.signs) this.ping();
  }

  expectEvery(intervalMs: number): void {
    const probeAfterMs = Math.max(this.base.probeAfterMs, Math.ceil(intervalMs * 1.1));
    const dropAfterMs = Math.max(this.base.dropAfterMs, Math.ceil(intervalMs * 1.25));
    this.rule = { ...this.base, probeAfterMs, dropAfterMs };
  }

  probe(withinMs: number): void {
    if (this.done || this.probeTimer) return;
    const asked = this.signs;
    this.ping();
    this.probeTimer = setTimeout(() => {
      setImmediate(() => {
        this.probeTimer = undefined;
        if (!this.done && this.signs === asked) this.drop(`no answer within ${withinMs} ms of a probe`);
      });
    }, withinMs);
    this.probeTimer.unref?.();
  }

  stop(): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.probeTimer);
    this.release(this);
  }

  private ping(): void {
    this.pingedAt = this.signs;
    try {
      this.peer.ping();
    } catch (e) {
      this.drop(`ping failed: ${(e as Error).message}`);
    }
  }

  private drop(why: string): void {
    if (this.done) return;
    this.stop();
    this.peer.drop(why);
  }
}

/**
 * Watches a transport by a rule (the transport's own, if it has one): its frames and pongs are signs of life, pings go out as transport pings, and
 * a dead peer's transport is terminated (its close handlers then run as after any loss). `onDrop` hears why
 * first. Watching stops when the transport closes.
 */
export const watchTransport = (l: Liveness, t: Transport, onDrop?: (why: string) => void): Watched => {
  const w = l.watch(
    {
      ping: () => t.ping?.(),
      drop: (why) => {
        onDrop?.(why);
        if (t.terminate) t.terminate();
        else t.close(CloseCode.abnormal, why);
      },
    },
    t.liveness,
  );
  const heard = () => w.heard();
  if (t.onAlive) t.onAlive(heard);
  else t.onMessage(heard);
  t.onClose(() => w.stop());
  return w;
};
