import { FleetlinkError } from "../protocol/errors.ts";
import { RunEvents, type WireResult } from "../protocol/wire.ts";
import type { Channel, Logger } from "../stream/channel.ts";
import { type Connector, Dialer, type DialerStatus, type Loss, type Plan } from "../stream/dialer.ts";
import { PendingCalls } from "../stream/pending.ts";
import { wsConnector } from "../stream/ws-dial.ts";
import type { HubClient } from "./http.ts";

export interface ReplyStreamOptions {
  /**
   * The reply stream is pinged when silent this long; a stream that has shown no sign of life (pong or
   * message) for 1.5 intervals is replaced by one to the next replica, so a dead stream is noticed within
   * 2 intervals. (Default: 2000)
   */
  pingIntervalMs?: number;
  /**
   * While the reply stream is down, and for `staleStreamMs` after it was replaced, open calls read their
   * replies back this often. (Default: 250)
   */
  recoveryPollMs?: number;
  /**
   * How long after a lost stream the hub may still push replies into the old connection: until its own
   * ping notices the connection is dead (twice the hub's pingIntervalMs, 10 s by default). (Default: 30000)
   */
  staleStreamMs?: number;
  /** Opens the stream to a hub (tests, a hub in the same process). (Default: a WebSocket to `/v1/runs/{run}/stream`) */
  connect?: Connector;
}

/** Where the reply stream is: connecting to or connected to a replica, or closed with the handle. */
export type ReplyStreamState =
  | { state: "connecting"; hub: string }
  | { state: "connected"; hub: string }
  | { state: "closed" };

/**
 * A run's replies, as its coordinator receives them: a stream from a hub replica (the shared dialer, moving
 * between replicas as they fail) that delivers each reply to the call waiting for it, and a read-back of open
 * calls' replies while the stream is down or may have lost some (they were pushed into a dead connection).
 */
export class ReplyStream {
  private readonly runId: string;
  private readonly http: HubClient;
  private readonly log: Logger;
  private readonly pending = new PendingCalls<WireResult>();
  /** When each open call started waiting, by instruction id. */
  private readonly since = new Map<string, number>();
  private readonly dialer: Dialer;
  private closed = false;
  private poll: ReturnType<typeof setTimeout> | undefined;
  private recovering = false;
  private recoverAgain = false;
  private staleUntil = 0;
  /** How long a probe (a ping sent on suspicion) waits for its pong. */
  private readonly probeMs: number;
  private readonly recoveryPollMs: number;
  private readonly staleStreamMs: number;
  private readonly unsubscribe: () => void;
  private connected!: Promise<void>;
  private markConnected!: () => void;

  constructor(runId: string, http: HubClient, log: Logger, opts: ReplyStreamOptions = {}) {
    this.runId = runId;
    this.http = http;
    this.log = log;
    const ping = opts.pingIntervalMs ?? 2000;
    this.probeMs = Math.min(ping, 500);
    this.recoveryPollMs = opts.recoveryPollMs ?? 250;
    this.staleStreamMs = opts.staleStreamMs ?? 30_000;
    this.dialer = new Dialer({
      hubs: http.hubs,
      // The HTTP client knows which replica answers: the stream follows it.
      pickHub: () => http.current,
      connect:
        opts.connect ??
        wsConnector({
          url: (hub) => `${hub}/v1/runs/${runId}/stream`,
          headers: () => ({ authorization: http.authHeader }),
          handshakeTimeoutMs: Math.min(http.requestTimeoutMs, Math.max(1000, 2 * ping)),
        }),
      // The one liveness rule: pinged when silent for an interval, replaced when silent for 1.5.
      liveness: { probeAfterMs: ping, dropAfterMs: 1.5 * ping, checkMs: Math.max(10, Math.floor(ping / 4)) },
      // Quick: calls read their replies back meanwhile.
      backoff: { initialMs: 50, maxMs: 2000 },
      channel: {
        log,
        onEvent: (m, b) => {
          if (m === RunEvents.replies) for (const r of b as WireResult[]) this.deliver(r);
        },
      },
      onLive: () => {
        this.markConnected();
        // Replies pushed while we were away were claimed for a socket that died: read them back, once.
        this.recover(0);
      },
      onLost: (loss) => this.onLost(loss),
    });
    // The replica our stream is on does not answer HTTP: its stream is most likely dead as well. Replace it
    // now rather than at the next missed pong; on a mere suspicion, ask it for a pong now and meanwhile read
    // replies back (a push retried on another replica is answered into this stream).
    this.unsubscribe = http.onUnreachable((hub, _err, certain) => {
      if (hub !== this.dialer.hub) return;
      if (certain) return this.dialer.drop(`hub ${hub} unreachable over HTTP`, false);
      this.staleUntil = Math.max(this.staleUntil, Date.now() + this.probeMs + this.recoveryPollMs);
      this.schedulePoll();
      this.probe();
    });
    this.resetConnected();
    this.dialer.start();
    // Until the first stream is up, replies are read back like while it is down.
    this.schedulePoll();
  }

  /** Resolves once the reply stream is connected. */
  ready(): Promise<void> {
    return this.connected;
  }

  get state(): ReplyStreamState {
    const s: DialerStatus = this.dialer.status;
    if (this.closed || s.state === "stopped" || s.state === "idle") return { state: "closed" };
    if (s.state === "live") return { state: "connected", hub: s.hub };
    return { state: "connecting", hub: s.state === "lost" ? this.http.current : s.hub };
  }

  /** The live stream and its replica, if connected (pushes and withdrawals ride on it). */
  get live(): { channel: Channel; hub: string } | null {
    const ch = this.dialer.channel;
    const hub = this.dialer.hub;
    return ch && hub ? { channel: ch, hub } : null;
  }

  /** A suspicion (a push over the stream got no answer): ping it now and replace it if it stays silent. */
  probe(): void {
    this.dialer.probe(this.probeMs);
  }

  /** Calls still waiting for a reply. */
  get size(): number {
    return this.pending.size;
  }

  has(instructionId: string): boolean {
    return this.pending.has(instructionId);
  }

  /** Waits for the reply to this instruction (registered before its push, so no reply can slip past). */
  expect(instructionId: string): Promise<WireResult> {
    this.since.set(instructionId, Date.now());
    const result = this.pending.add(instructionId);
    result.catch(() => {});
    return result;
  }

  /** Stops waiting for this reply; false if nothing waited. */
  fail(instructionId: string, e: unknown): boolean {
    this.since.delete(instructionId);
    return this.pending.fail(instructionId, e);
  }

  /** Ends the stream, fails open calls with CANCELLED and stops every timer. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.poll);
    this.unsubscribe();
    this.pending.closeAll(new FleetlinkError("CANCELLED", "run handle closed"));
    this.since.clear();
    this.dialer.stop("run handle closed");
  }

  private onLost(loss: Loss): Plan {
    this.resetConnected();
    if (this.closed) return { stop: "run handle closed" };
    this.log.debug({ run: this.runId, hub: loss.hub, why: loss.reason }, "run stream lost");
    // `dead`: the replica did not answer at all (no pong, refused, reset), so HTTP requests waiting on it are
    // cut short as well; otherwise the hub ended the stream itself and only the next one is tried.
    if (loss.dead)
      this.http.reportUnreachable(
        loss.hub,
        new FleetlinkError("STREAM_CLOSED", `hub ${loss.hub}: run stream ${loss.reason}`),
      );
    else this.http.rotate(loss.hub);
    // The hub may go on pushing replies into the old connection until it sees it is dead: poll meanwhile.
    this.staleUntil = Date.now() + this.staleStreamMs;
    this.schedulePoll();
    return {};
  }

  private resetConnected(): void {
    this.connected = new Promise((r) => {
      this.markConnected = r;
    });
  }

  private deliver(r: WireResult): void {
    this.since.delete(r.replyTo);
    // A reply whose call already ended (cancelled, timed out, quorum met) has no waiter: dropped here, and it
    // can never reach a later call because every instruction id is new.
    if (!this.pending.deliver(r.replyTo, r)) this.log.debug({ instruction: r.replyTo }, "late reply dropped");
  }

  /**
   * Reads back the replies of open calls older than `olderThanMs`. One read at a time: a read asked for
   * while one runs (a reconnect's) runs right after it; then the fallback poll continues if still needed.
   */
  private recover(olderThanMs: number): void {
    if (this.closed) return;
    if (this.recovering) {
      if (olderThanMs === 0) this.recoverAgain = true;
      return;
    }
    this.recovering = true;
    void this.readBack(olderThanMs).finally(() => {
      this.recovering = false;
      if (this.recoverAgain) {
        this.recoverAgain = false;
        this.recover(0);
      } else this.schedulePoll();
    });
  }

  /** The fallback poll: only while the stream is down or the hub may still write into a dead one. */
  private schedulePoll(): void {
    if (this.closed || this.poll || this.recovering) return;
    if (this.dialer.channel && Date.now() >= this.staleUntil) return;
    this.poll = setTimeout(() => {
      this.poll = undefined;
      this.recover(this.recoveryPollMs);
    }, this.recoveryPollMs);
    this.poll.unref();
  }

  private async readBack(olderThanMs: number): Promise<void> {
    const now = Date.now();
    const ids = this.pending.ids().filter((id) => now - (this.since.get(id) ?? now) >= olderThanMs);
    if (ids.length === 0) return;
    try {
      for (let i = 0; i < ids.length && !this.closed; i += 5000) {
        const { replies } = await this.http.request<{ replies: WireResult[] }>(
          "POST",
          `/v1/runs/${this.runId}/replies/query`,
          { instructionIds: ids.slice(i, i + 5000) },
        );
        for (const r of replies) this.deliver(r);
      }
    } catch (e) {
      this.log.debug({ err: String(e) }, "reply recovery failed");
    }
  }
}
