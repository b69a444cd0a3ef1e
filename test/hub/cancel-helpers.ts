// Handlers that record when they start and when their signal aborts, for the cancellation tests.
import type { Handler, HandlerContext } from "../../src/node/handler.ts";

export interface Seen {
  startedAt: number;
  abortedAt?: number;
  reason?: unknown;
}

/** Records each run of its handlers by instruction id; `started(n)` resolves once n have started. */
export class Watch {
  readonly runs = new Map<string, Seen>();
  private waiters: { n: number; done: () => void }[] = [];

  private start(ctx: HandlerContext): Seen {
    const seen: Seen = { startedAt: performance.now() };
    this.runs.set(ctx.instructionId, seen);
    ctx.signal.addEventListener(
      "abort",
      () => {
        seen.abortedAt = performance.now();
        seen.reason = ctx.signal.reason;
      },
      { once: true },
    );
    for (const w of this.waiters.filter((x) => this.runs.size >= x.n)) w.done();
    this.waiters = this.waiters.filter((x) => this.runs.size < x.n);
    return seen;
  }

  started(n = 1): Promise<void> {
    if (this.runs.size >= n) return Promise.resolve();
    return new Promise((done) => this.waiters.push({ n, done }));
  }

  /** Waits on its signal (up to `ms`), then returns a result anyway: a reply the agent must drop. */
  cooperative(ms = 10_000): Handler {
    return (_p, ctx) => {
      this.start(ctx);
      return new Promise((resolve) => {
        const t = setTimeout(() => resolve("finished"), ms);
        ctx.signal.addEventListener(
          "abort",
          () => {
            clearTimeout(t);
            resolve("result after abort");
          },
          { once: true },
        );
      });
    };
  }

  /** Ignores its signal and returns after `ms`. */
  stubborn(ms: number): Handler {
    return async (_p, ctx) => {
      this.start(ctx);
      await new Promise((r) => setTimeout(r, ms));
      return "late result";
    };
  }

  /** Answers after `ms`. */
  quick(ms: number): Handler {
    return async (p, ctx) => {
      this.start(ctx);
      await new Promise((r) => setTimeout(r, ms));
      return p;
    };
  }

  /** Resolves when every started run has its signal aborted, or rejects after `ms`. */
  async allAborted(ids: readonly string[], ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!ids.every((id) => this.runs.get(id)?.abortedAt !== undefined)) {
      if (Date.now() > deadline) throw new Error(`signal not aborted within ${ms} ms for ${ids.join(", ")}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

export const codeOf = (reason: unknown): string | undefined =>
  (reason as { code?: string } | undefined)?.code;

/** Polls until `check` holds (or throws after `ms`). */
export const until = async (check: () => boolean | Promise<boolean>, ms: number, what: string) => {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};
