import { FleetlinkError } from "../../protocol/errors.ts";

/** Seconds a refused caller is told to wait (Retry-After); clients add their own backoff and jitter. */
export const RETRY_AFTER_S = 1;

/**
 * A bound on work of one kind in progress at once (enrolments, stream upgrades being authenticated): a connect
 * storm is admitted at the pace the store answers, and what is beyond the bound is refused at once with
 * RATE_LIMITED and Retry-After, which clients retry, instead of queueing until their own timeouts fire and
 * they retry into an even longer queue.
 */
export class Admission {
  private busy = 0;
  private readonly max: number;
  private readonly what: string;

  constructor(max: number, what: string) {
    this.max = max;
    this.what = what;
  }

  /** Runs `fn` if there is room; RATE_LIMITED (nothing run) otherwise. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.busy >= this.max)
      throw new FleetlinkError(
        "RATE_LIMITED",
        `${this.busy} ${this.what} in progress on this hub; retry after ${RETRY_AFTER_S} s`,
      );
    this.busy++;
    try {
      return await fn();
    } finally {
      this.busy--;
    }
  }

  get inProgress(): number {
    return this.busy;
  }
}

/** Enrolments one hub process serves at once: the store registers them in batches of up to 256. */
export const MAX_ENROLLING = 1024;
/** Node stream upgrades being authenticated at once (a store read each, batched). */
export const MAX_UPGRADING = 1024;
