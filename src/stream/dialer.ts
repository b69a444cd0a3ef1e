import { CloseCode } from "../protocol/close-codes.ts";
import { describeError } from "../protocol/errors.ts";
import { Backoff, type BackoffPolicy } from "../util/backoff.ts";
import { Channel, type ChannelOptions } from "./channel.ts";
import { Liveness, type LivenessRule, type Watched, watchTransport } from "./liveness.ts";
import { StatusFeed } from "./status-feed.ts";
import type { Transport } from "./transport.ts";

/** Opens a connection to one hub; rejects when it cannot (a refusal is a `DialRefused` from ws-dial.ts). */
export type Connector = (hub: string) => Promise<Transport>;

/** Where a dialer is, as a typed union an application can switch on (`dialer.status`, `dialer.follow()`). */
export type DialerStatus =
  | { state: "idle" }
  /** Opening a connection to `hub` (attempt 0 after every live connection). */
  | { state: "dialing"; hub: string; attempt: number }
  /** Connected, saying hello. */
  | { state: "hello"; hub: string }
  | { state: "live"; hub: string }
  /** The connection ended (or never opened); the next dial is in `retryInMs`. */
  | { state: "lost"; hub: string; code: number; reason: string; retryInMs: number }
  /** Stopped: by `stop()`, or because a loss's policy said so. */
  | { state: "stopped"; reason: string };

/** Why a connection ended, or why it never opened. */
export interface Loss {
  hub: string;
  /** The close code (CloseCode): the hub's, ours, or `abnormal` when the connection dropped or never opened. */
  code: number;
  /** For people (logs, status); policies branch on `code` and `error`, never on this text. */
  reason: string;
  /** The dial's error when the connection never opened (a `DialRefused` when the hub refused it). */
  error?: unknown;
  /** Whether hello had completed on it. */
  wasLive: boolean;
  /** Nothing answered (a network failure, a dead path dropped by the liveness rule), as opposed to a hub that ended it. */
  dead: boolean;
}

/** What to do after a loss: dial again after `retryInMs` (default: the backoff's next delay), or stop. */
export type Plan = { retryInMs?: number } | { stop: string };

export interface DialerOptions {
  /** Hubs to dial, in turn: the dialer moves to the next one after every loss. */
  hubs: readonly string[];
  /** Chooses the hub to dial instead of `hubs` (a client that tracks which replica is healthy). (Optional) */
  pickHub?: () => string;
  /** Opens one connection (a WebSocket in production, memoryPair in tests). */
  connect: Connector;
  /** The dead-peer rule for live connections (stream/liveness.ts). */
  liveness: LivenessRule;
  /** The reconnect schedule when a loss's plan gives no delay; reset when a connection goes live. */
  backoff: BackoffPolicy;
  /** Options of each connection's Channel (its request and event handlers, logger). */
  channel?: ChannelOptions;
  /** Said on each new connection before it counts as live; a throw ends the connection. (Default: none) */
  hello?: (ch: Channel, hub: string) => Promise<void>;
  /** A connection went live (after hello). */
  onLive?: (ch: Channel, hub: string) => void;
  /** A connection ended or never opened: the policy for what comes next, by close code. (Default: backoff) */
  onLost?: (loss: Loss) => Plan | undefined;
  /** Every status change. */
  onStatus?: (s: DialerStatus) => void;
}

/**
 * The one reconnect loop, shared by the node agent and the coordinator's run stream:
 * dial → hello → live → lost → backoff → next hub. The application gives its hello and its policy per close
 * code; the dialer owns the timers, the liveness rule and the order of events (a stale connection's late
 * close changes nothing).
 */
export class Dialer {
  private readonly o: DialerOptions;
  private readonly feed = new StatusFeed<DialerStatus>({ state: "idle" });
  private readonly backoff: Backoff;
  private readonly liveness: Liveness;
  private index = 0;
  /** Bumped by every dial and by stop: callbacks of an older connection see a different generation. */
  private generation = 0;
  private current: {
    ch: Channel | null;
    transport: Transport | null;
    watch: Watched | null;
    hub: string;
  } | null = null;
  /** Why the current connection is being dropped by us (drop), so its loss says so. */
  private dropping: { why: string; dead: boolean } | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running = false;

  constructor(o: DialerOptions) {
    this.o = o;
    this.backoff = new Backoff(o.backoff);
    this.liveness = new Liveness(o.liveness);
  }

  get status(): DialerStatus {
    return this.feed.value;
  }

  /** The status now and at every change, until stopped. */
  follow(): AsyncGenerator<DialerStatus> {
    return this.feed.follow();
  }

  /** The live connection's channel, if any. */
  get channel(): Channel | null {
    return this.feed.value.state === "live" ? (this.current?.ch ?? null) : null;
  }

  /** The hub of the connection being dialled or held, if any. */
  get hub(): string | null {
    return this.current?.hub ?? null;
  }

  /** Starts dialing (again, after a stop). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.backoff.reset();
    this.dial();
  }

  /** Stops dialing and closes the connection, if any. */
  stop(reason = "stopped", code: number = CloseCode.normal): void {
    if (!this.running && this.feed.value.state === "stopped") return;
    this.running = false;
    this.generation++;
    clearTimeout(this.timer);
    const c = this.current;
    this.current = null;
    c?.watch?.stop();
    c?.ch?.close(code, reason);
    c?.transport?.terminate?.();
    this.set({ state: "stopped", reason });
  }

  /**
   * Drops the current connection, or gives up the dial in progress, now (a suspicion confirmed elsewhere, a
   * test); the loss follows as after any failure, with `dead` as given (default true: the hub did not answer).
   */
  drop(why: string, dead = true): void {
    const c = this.current;
    if (!c) return;
    if (!c.transport) {
      this.lost(this.generation, { hub: c.hub, code: CloseCode.abnormal, reason: why, wasLive: false, dead });
      return;
    }
    this.dropping = { why, dead };
    if (c.transport.terminate) c.transport.terminate();
    else c.transport.close(CloseCode.abnormal, why);
  }

  /** A suspicion: ping the live connection now and drop it if nothing is heard within `withinMs`. */
  probe(withinMs: number): void {
    this.current?.watch?.probe(withinMs);
  }

  private set(s: DialerStatus): void {
    this.feed.set(s, s.state === "stopped");
    this.o.onStatus?.(s);
  }

  private pick(): string {
    return this.o.pickHub?.() ?? this.o.hubs[this.index % this.o.hubs.length]!;
  }

  private dial(): void {
    this.timer = undefined;
    if (!this.running) return;
    const gen = ++this.generation;
    const hub = this.pick();
    this.current = { ch: null, transport: null, watch: null, hub };
    this.dropping = null;
    this.set({ state: "dialing", hub, attempt: this.backoff.attempts });
    this.o.connect(hub).then(
      (t) => {
        if (gen !== this.generation) {
          if (t.terminate) t.terminate();
          else t.close(CloseCode.normal, "stopped");
          return;
        }
        this.opened(gen, hub, t);
      },
      (e: unknown) => {
        if (gen !== this.generation) return;
        this.lost(gen, {
          hub,
          code: CloseCode.abnormal,
          reason: describeError(e),
          error: e,
          wasLive: false,
          // A refusal (DialRefused carries the HTTP status) is an answer; anything else is silence.
          dead: !(typeof (e as { status?: unknown } | null)?.status === "number"),
        });
      },
    );
  }

  private opened(gen: number, hub: string, t: Transport): void {
    const c = this.current!;
    c.transport = t;
    c.watch = watchTransport(this.liveness, t, (why) => {
      if (gen === this.generation) this.dropping = { why, dead: true };
    });
    const ch = new Channel(t, this.o.channel);
    c.ch = ch;
    let live = false;
    ch.onClose((reason, code) => {
      if (gen !== this.generation) return;
      const d = this.dropping;
      this.lost(gen, {
        hub,
        code,
        reason: d ? d.why : reason,
        wasLive: live,
        dead: d ? d.dead : code === CloseCode.abnormal,
      });
    });
    this.set({ state: "hello", hub });
    const hello = this.o.hello ? this.o.hello(ch, hub) : Promise.resolve();
    hello.then(
      () => {
        if (gen !== this.generation || !ch.isOpen) return;
        live = true;
        this.backoff.reset();
        this.set({ state: "live", hub });
        this.o.onLive?.(ch, hub);
      },
      (e: unknown) => {
        if (gen !== this.generation) return;
        ch.close(CloseCode.internalError, `hello failed: ${describeError(e)}`);
      },
    );
  }

  private lost(gen: number, loss: Loss): void {
    if (gen !== this.generation) return;
    this.generation++; // whatever the old connection does next changes nothing
    const c = this.current;
    this.current = null;
    c?.watch?.stop();
    c?.transport?.terminate?.();
    if (!this.running) return;
    this.index++;
    const plan = this.o.onLost?.(loss) ?? {};
    if (!this.running) return; // the policy stopped us
    if ("stop" in plan) {
      this.running = false;
      this.set({ state: "stopped", reason: plan.stop });
      return;
    }
    const retryInMs = plan.retryInMs ?? this.backoff.next();
    if (retryInMs === undefined) {
      // The backoff policy's maxAttempts ran out: give up rather than redial at once, forever.
      this.running = false;
      this.set({ state: "stopped", reason: `gave up after ${this.backoff.attempts} attempts` });
      return;
    }
    this.set({ state: "lost", hub: loss.hub, code: loss.code, reason: loss.reason, retryInMs });
    this.timer = setTimeout(() => this.dial(), retryInMs);
  }
}
