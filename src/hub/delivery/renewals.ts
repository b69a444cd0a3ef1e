import { CloseCode } from "../../protocol/close-codes.ts";
import { MAX_RENEWALS, type Store } from "../../store/store.ts";
import type { Logger } from "../../stream/channel.ts";
import type { Session } from "./session.ts";

/** A heartbeat is recorded at most this long after it arrived (and within a quarter of the node's interval). */
const MAX_RENEW_DELAY_MS = 1000;
/** After a failed renewal (a store blip), the next try. */
const RENEW_RETRY_MS = 250;

/**
 * Presence for every node stream here in one store statement per batch instead of a write per heartbeat: a
 * heartbeat is noted (`beat`) and recorded soon with every other one this replica received.
 */
export class Renewals {
  private readonly store: Store;
  private readonly log: Logger;
  private readonly sessions: () => Iterable<Session>;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private at = Number.POSITIVE_INFINITY;
  private renewing = false;
  private closed = false;

  constructor(store: Store, log: Logger, sessions: () => Iterable<Session>) {
    this.store = store;
    this.log = log;
    this.sessions = sessions;
  }

  /** A heartbeat arrived on this stream: schedule its recording. */
  beat(s: Session, asked: number | undefined): void {
    s.beatAt = Date.now();
    s.beatInterval = asked;
    if (asked !== undefined && asked !== s.interval) {
      s.interval = asked;
      s.expectEvery(asked);
    }
    this.schedule(s.beatAt + this.delay(s));
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  /**
   * How long a heartbeat may wait to be recorded: the node stays online as long as each beat is in the store
   * before the previous one's window (2 × interval) runs out, and beats come every interval, so a quarter
   * interval leaves room for a slow store.
   */
  private delay(s: Session): number {
    return Math.min(MAX_RENEW_DELAY_MS, Math.floor(s.interval / 4));
  }

  private schedule(at: number): void {
    if (this.closed || at >= this.at) return;
    clearTimeout(this.timer);
    this.at = at;
    this.timer = setTimeout(
      () => {
        this.at = Number.POSITIVE_INFINITY;
        void this.renew();
      },
      Math.max(0, at - Date.now()),
    );
    this.timer.unref();
  }

  /**
   * Each stream's latest heartbeat is recorded with its age (so the store's clock decides, not ours), guarded
   * by the stream's session. A stream the store did not renew was superseded (the node is connected elsewhere)
   * or its node unregistered: it is closed, as a refused heartbeat closed it before.
   */
  private async renew(): Promise<void> {
    if (this.renewing) return; // the running renewal schedules the next one when it ends
    this.renewing = true;
    let failed = false;
    try {
      const batch: [Session, number][] = [];
      for (const s of this.sessions())
        if (s.ready && s.beatAt > 0 && s.channel.isOpen) batch.push([s, s.beatAt]);
      for (let i = 0; i < batch.length; i += MAX_RENEWALS) {
        const part = batch.slice(i, i + MAX_RENEWALS);
        const now = Date.now();
        const got = await this.store.renewSessions(
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
      this.log.warn({ err: String(e) }, "presence renewal failed; retrying");
    } finally {
      this.renewing = false;
      let next = Number.POSITIVE_INFINITY;
      for (const s of this.sessions())
        if (s.ready && s.beatAt > 0) next = Math.min(next, s.beatAt + this.delay(s));
      if (next < Number.POSITIVE_INFINITY)
        this.schedule(failed ? Math.max(next, Date.now() + RENEW_RETRY_MS) : next);
    }
  }
}
