/** Exponential backoff with full jitter: a random delay in [0, min(max, base × 2^attempt)]. */
export const backoff = (attempt: number, baseMs = 100, maxMs = 5000): number =>
  Math.floor(Math.random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20)));
