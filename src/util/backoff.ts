/**
 * The one retry schedule: exponential backoff with jitter, by named parameters. Every reconnect, resend and
 * retry in fleetlink takes its delays from here, so they differ only in their numbers, never in their rule.
 * It lives in util/ (the lowest layer) so that any layer, the store's included, can use it.
 */
export interface BackoffPolicy {
  /** The delay before the first retry, in ms, before jitter. */
  initialMs: number;
  /** The largest delay, in ms, before jitter. */
  maxMs: number;
  /** Each delay is the previous one times this. (Default: 2) */
  factor?: number;
  /**
   * The share of each delay that is random: 1 = full jitter (uniform in [0, d]), 0 = none, 0.25 = uniform in
   * [0.75 d, d]. Jitter spreads the retries of many clients that failed together. (Default: 1)
   */
  jitter?: number;
  /** Retries after which the schedule gives up (`Backoff.next()` returns undefined). (Default: never) */
  maxAttempts?: number;
}

/** The delay before retry number `attempt` (0 = the first), drawn with `random` (default Math.random). */
export const backoffDelay = (
  p: BackoffPolicy,
  attempt: number,
  random: () => number = Math.random,
): number => {
  // The exponent is capped so a long outage cannot overflow to Infinity.
  const d = Math.min(p.maxMs, p.initialMs * (p.factor ?? 2) ** Math.min(Math.max(0, attempt), 64));
  const jitter = Math.min(1, Math.max(0, p.jitter ?? 1));
  return Math.floor(d * (1 - jitter * random()));
};

/** One retry sequence: `next()` gives each delay in turn; `reset()` after a success starts over. */
export class Backoff {
  private readonly policy: BackoffPolicy;
  private readonly random: () => number;
  private n = 0;

  constructor(policy: BackoffPolicy, random: () => number = Math.random) {
    this.policy = policy;
    this.random = random;
  }

  /** Retries taken since the last reset. */
  get attempts(): number {
    return this.n;
  }

  /** The next delay in ms, or undefined once `maxAttempts` retries were taken (give up). */
  next(): number | undefined {
    if (this.policy.maxAttempts !== undefined && this.n >= this.policy.maxAttempts) return undefined;
    return backoffDelay(this.policy, this.n++, this.random);
  }

  reset(): void {
    this.n = 0;
  }
}
