/**
 * Limits every layer enforces the same way. The payload limit is configurable per hub (`serve --max-payload`);
 * the others are fixed so that a hub, a store and an agent agree without negotiating.
 */

/** Largest instruction or reply payload (JSON-encoded), in bytes. (Default for hubs and stores: 4 MiB) */
export const DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;
/** Room a stream frame or HTTP body may take beyond its payload (ids, method, envelope), in bytes. */
export const FRAME_OVERHEAD_BYTES = 64 * 1024;
/** Calls one run-stream `push` frame may carry (the SDK coalesces concurrent calls into frames of at most this). */
export const MAX_CALLS_PER_PUSH = 1024;
/** Instructions one call may carry, as over HTTP. */
export const MAX_ITEMS_PER_CALL = 100_000;
/** Longest instruction TTL, in ms (30 days): longer TTLs are refused, so `expiresAt` stays a safe integer. */
export const MAX_TTL_MS = 30 * 24 * 60 * 60 * 1000;
/** Longest `error.message` kept in a reply, in characters; the hub and the agent cut longer ones. */
export const MAX_ERROR_MESSAGE_CHARS = 4096;
/** Deepest nesting of arrays/objects accepted in a payload. */
export const MAX_JSON_DEPTH = 128;
/** Longest peer-supplied text written to a log line, in characters. */
export const MAX_LOGGED_CHARS = 256;

/** Cuts `s` to at most `max` characters, saying so. */
export const truncate = (s: string, max: number): string =>
  s.length <= max ? s : `${s.slice(0, max)}… (${s.length - max} more characters)`;

/** True if `v` nests arrays/objects deeper than `max` (checked without recursion, so any depth is safe). */
export const tooDeep = (v: unknown, max = MAX_JSON_DEPTH): boolean => {
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (typeof x !== "object" || x === null) continue;
    if (d >= max) return true;
    for (const c of Array.isArray(x) ? x : Object.values(x)) stack.push([c, d + 1]);
  }
  return false;
};

/** Instruction methods with this prefix are sent by the hub only (checkpoints); a coordinator's push of one is refused. */
export const RESERVED_METHOD_PREFIX = "checkpoint.";
