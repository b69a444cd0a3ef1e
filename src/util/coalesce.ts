export interface CoalescedOptions {
  /**
   * Least time between the starts of two runs, in ms: triggers within it wait for it (a dashboard refreshed at
   * most every 250 ms). (Default: 0, run at once)
   */
  minIntervalMs?: number;
}

/**
 * Runs `fn` when triggered; triggers that arrive while it runs fold into one more run afterwards. This is
 * how a hub batches work across nodes: every wake-up during a claim becomes one next claim, not many.
 * `triggerIfIdle` is the single-flight form: a trigger while a run is under way is dropped (a periodic sweep
 * on a slow store must not queue another behind itself).
 */
export class Coalesced {
  private running = false;
  private again = false;
  private lastStart = Number.NEGATIVE_INFINITY;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  private readonly fn: () => Promise<void>;
  private readonly onError: (e: unknown) => void;
  private readonly minIntervalMs: number;

  constructor(fn: () => Promise<void>, onError: (e: unknown) => void, o: CoalescedOptions = {}) {
    this.fn = fn;
    this.onError = onError;
    this.minIntervalMs = o.minIntervalMs ?? 0;
  }

  /** Whether a run is under way. */
  get busy(): boolean {
    return this.running;
  }

  trigger(): void {
    if (this.closed || this.timer) return; // a scheduled run is still to come: this trigger joins it
    if (this.running) {
      this.again = true;
      return;
    }
    this.start();
  }

  /** Runs now unless a run is under way or waiting; then this trigger is dropped. Returns whether it ran. */
  triggerIfIdle(): boolean {
    if (this.closed || this.running || this.timer) return false;
    this.start();
    return true;
  }

  /** No more runs (a run under way finishes). */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private start(): void {
    const wait = this.lastStart + this.minIntervalMs - Date.now();
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.loop();
      }, wait);
      this.timer.unref?.();
      return;
    }
    this.running = true;
    queueMicrotask(() => void this.loop());
  }

  private async loop(): Promise<void> {
    this.running = true;
    do {
      if (this.closed) break;
      this.again = false;
      this.lastStart = Date.now();
      try {
        await this.fn();
      } catch (e) {
        this.onError(e);
      }
      if (this.again && this.minIntervalMs > 0) {
        // More to do, but not before the interval: the next run is scheduled; triggers meanwhile join it.
        this.running = false;
        this.again = false;
        this.start();
        return;
      }
    } while (this.again);
    this.running = false;
  }
}
