import type { Store } from "../../store/store.ts";
import type { Logger } from "../../stream/channel.ts";

export interface RateSample {
  /** End of the interval (this replica's clock), in ms. */
  at: number;
  /** Per second over the interval, store-wide. */
  pushes: number;
  replies: number;
  errors: number;
}

export interface RatesOptions {
  store: Store;
  log: Logger;
  /** Sampling interval in ms. (Default: 10000) */
  intervalMs?: number;
  /** Samples kept. (Default: 360: an hour at 10 s) */
  size?: number;
}

/**
 * Fleet-wide rates for the dashboard's charts: every interval, one read of store-wide counters (the newest
 * instruction and reply sequence numbers, and the error replies since the last reading), kept in a ring buffer.
 * Counters, not this replica's own traffic: every replica shows the same figures, from its own start on.
 */
export class Rates {
  readonly intervalMs: number;
  readonly startedAt = Date.now();
  private readonly size: number;
  private readonly ring: RateSample[] = [];
  private next = 0;
  private last: { at: number; instructions: number; replies: number } | null = null;
  private timer: ReturnType<typeof setInterval> | undefined;
  /** The sample being taken, if one is: stop() waits for it, so none reads a store being closed. */
  private sampling: Promise<void> | null = null;
  private readonly o: RatesOptions;

  constructor(o: RatesOptions) {
    this.o = o;
    this.intervalMs = o.intervalMs ?? 10_000;
    this.size = o.size ?? 360;
  }

  start(): void {
    this.tick();
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.sampling;
  }

  private tick(): void {
    // A slow store skips a sample rather than queueing reads.
    if (this.sampling) return;
    this.sampling = this.sample().finally(() => {
      this.sampling = null;
    });
  }

  /** Oldest first. */
  samples(): RateSample[] {
    return [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
  }

  private async sample(): Promise<void> {
    try {
      const c = await this.o.store.activityCounters(this.last?.replies ?? null);
      const at = Date.now();
      if (this.last) {
        const s = Math.max(1, at - this.last.at) / 1000;
        // Cleanup may delete the newest rows of a table: a drop is not a negative rate.
        this.push({
          at,
          pushes: Math.max(0, c.instructions - this.last.instructions) / s,
          replies: Math.max(0, c.replies - this.last.replies) / s,
          errors: c.errors / s,
        });
      }
      this.last = { at, instructions: c.instructions, replies: c.replies };
    } catch (e) {
      this.o.log.warn({ err: String(e) }, "dashboard rates not sampled");
    }
  }

  private push(s: RateSample): void {
    if (this.ring.length < this.size) this.ring.push(s);
    else {
      this.ring[this.next] = s;
      this.next = (this.next + 1) % this.size;
    }
  }
}
