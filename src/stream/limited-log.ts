import type { Logger } from "./channel.ts";

/**
 * Wraps a logger so a peer cannot flood it: at most `max` warnings per window; the rest are counted and
 * reported in one line when the next window opens. Debug lines pass through (they are off in production).
 */
export const limitedLogger = (log: Logger, o: { max?: number; windowMs?: number } = {}): Logger => {
  const max = o.max ?? 20;
  const windowMs = o.windowMs ?? 10_000;
  let windowStart = 0;
  let count = 0;
  let suppressed = 0;
  return {
    debug: (obj, msg) => log.debug(obj, msg),
    warn: (obj, msg) => {
      const now = Date.now();
      if (now - windowStart >= windowMs) {
        if (suppressed > 0) log.warn({ suppressed, windowMs }, "warnings suppressed (rate limit)");
        windowStart = now;
        count = 0;
        suppressed = 0;
      }
      if (count++ < max) log.warn(obj, msg);
      else suppressed++;
    },
  };
};
