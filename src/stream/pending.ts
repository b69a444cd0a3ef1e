import { FleetlinkError } from "../protocol/errors.ts";

interface Entry<T> {
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * Calls waiting for an answer, keyed by message id. Shared by hub streams, node agent, coordinator and the
 * Maelstrom runtime. Delivery is synchronous and context-aware: an answer that races a timeout or a
 * cancellation is either delivered (it came first) or reported as unmatched (it came second) — never lost
 * while the call waits, never blocking the sender.
 */
export class PendingCalls<T> {
  private readonly calls = new Map<string, Entry<T>>();

  /** Waits for `deliver(id)`; rejects on timeout, abort or `closeAll`. */
  add(id: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<T> {
    if (this.calls.has(id)) return Promise.reject(new Error(`pending call ${id} already exists`));
    return new Promise<T>((resolve, reject) => {
      const entry: Entry<T> = { resolve, reject, timer: undefined, signal: opts.signal, onAbort: undefined };
      if (opts.signal?.aborted) {
        reject(abortError(opts.signal));
        return;
      }
      if (opts.timeoutMs !== undefined)
        entry.timer = setTimeout(
          () =>
            this.fail(
              id,
              new FleetlinkError("MESSAGE_EXPIRED", `no answer to ${id} within ${opts.timeoutMs} ms`),
            ),
          opts.timeoutMs,
        );
      if (opts.signal) {
        const signal = opts.signal;
        entry.onAbort = () => this.fail(id, abortError(signal));
        signal.addEventListener("abort", entry.onAbort, { once: true });
      }
      this.calls.set(id, entry);
    });
  }

  private take(id: string): Entry<T> | undefined {
    const e = this.calls.get(id);
    if (!e) return undefined;
    this.calls.delete(id);
    if (e.timer) clearTimeout(e.timer);
    if (e.onAbort) e.signal?.removeEventListener("abort", e.onAbort);
    return e;
  }

  /** Hands the answer to the waiting call. False if no call waits (finished, timed out or cancelled). */
  deliver(id: string, value: T): boolean {
    const e = this.take(id);
    e?.resolve(value);
    return e !== undefined;
  }

  fail(id: string, err: unknown): boolean {
    const e = this.take(id);
    e?.reject(err);
    return e !== undefined;
  }

  has(id: string): boolean {
    return this.calls.has(id);
  }

  get size(): number {
    return this.calls.size;
  }

  ids(): string[] {
    return [...this.calls.keys()];
  }

  closeAll(err: unknown): void {
    for (const id of [...this.calls.keys()]) this.fail(id, err);
  }
}

export const abortError = (signal: AbortSignal): FleetlinkError =>
  new FleetlinkError("CANCELLED", `cancelled: ${String(signal.reason ?? "aborted")}`, {
    cause: signal.reason,
  });
