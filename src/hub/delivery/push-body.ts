import { invalid } from "../../protocol/errors.ts";
import {
  MAX_CALLS_PER_PUSH,
  MAX_ITEMS_PER_CALL,
  MAX_JSON_DEPTH,
  MAX_TTL_MS,
  tooDeep,
} from "../../protocol/limits.ts";

export { MAX_CALLS_PER_PUSH, MAX_ITEMS_PER_CALL };

import { checkTraceparent } from "../../protocol/trace-context.ts";
import { encodePayload } from "../../protocol/wire.ts";
import type { TracedInstruction } from "../../store/ops/instruction-record.ts";

const ITEM_KEYS = new Set([
  "id",
  "dst",
  "method",
  "payload",
  "ttlMs",
  "groupId",
  "maxAttempts",
  "holdWhileOffline",
  "traceparent",
]);

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The instructions of one call as the HTTP route's schema admits them (same fields, same bounds), payloads
 * encoded for the store. The store checks ids, names, TTL and payload size again, naming the same fields.
 */
export const parseItems = (v: unknown, f: string): TracedInstruction[] => {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_ITEMS_PER_CALL)
    throw invalid(f, `must be an array of 1 to ${MAX_ITEMS_PER_CALL} instructions`);
  return v.map((it, i) => {
    const g = `${f}[${i}]`;
    if (!isObject(it)) throw invalid(g, "must be an object");
    for (const k of Object.keys(it))
      if (!ITEM_KEYS.has(k)) throw invalid(`${g}.${k}`, "is not a known field");
    if (typeof it.dst !== "string") throw invalid(`${g}.dst`, "must be a UUID");
    if (typeof it.method !== "string" || it.method.length === 0 || it.method.length > 200)
      throw invalid(`${g}.method`, "must be a string of 1 to 200 characters");
    if (!Number.isSafeInteger(it.ttlMs) || (it.ttlMs as number) < 1 || (it.ttlMs as number) > MAX_TTL_MS)
      throw invalid(`${g}.ttlMs`, `must be an integer from 1 to ${MAX_TTL_MS}`);
    if (it.id !== undefined && typeof it.id !== "string") throw invalid(`${g}.id`, "must be a UUID");
    if (it.groupId !== undefined && typeof it.groupId !== "string")
      throw invalid(`${g}.groupId`, "must be a string");
    if (it.maxAttempts !== undefined && !Number.isSafeInteger(it.maxAttempts))
      throw invalid(`${g}.maxAttempts`, "must be an integer");
    if (it.holdWhileOffline !== undefined && typeof it.holdWhileOffline !== "boolean")
      throw invalid(`${g}.holdWhileOffline`, "must be a boolean");
    if (tooDeep(it.payload)) throw invalid(`${g}.payload`, `nests deeper than ${MAX_JSON_DEPTH} levels`);
    const traceparent = checkTraceparent(`${g}.traceparent`, it.traceparent);
    return {
      dst: it.dst,
      method: it.method,
      ttlMs: it.ttlMs as number,
      payload: encodePayload(it.payload),
      ...(it.id !== undefined ? { id: it.id as string } : {}),
      ...(it.groupId !== undefined ? { groupId: it.groupId as string } : {}),
      ...(it.maxAttempts !== undefined ? { maxAttempts: it.maxAttempts as number } : {}),
      ...(it.holdWhileOffline ? { holdWhileOffline: true } : {}),
      ...(traceparent ? { traceparent } : {}),
    };
  });
};

/**
 * A run-stream `push` body (described by `RunStreamMessages.push` in src/protocol/stream-schemas.ts, checked here call by call): `{ calls: [{ items }] }`. Each call is checked, pushed and answered on its own
 * (`parseItems(call.items, "items")`), so one bad call in a coalesced frame fails only itself.
 */
export const parsePush = (body: unknown): Record<string, unknown>[] => {
  if (!isObject(body)) throw invalid("body", "must be an object");
  for (const k of Object.keys(body)) if (k !== "calls") throw invalid(k, "is not a known field");
  const { calls } = body;
  if (!Array.isArray(calls) || calls.length === 0 || calls.length > MAX_CALLS_PER_PUSH)
    throw invalid("calls", `must be an array of 1 to ${MAX_CALLS_PER_PUSH} calls`);
  return calls.map((c, i) => {
    if (!isObject(c)) throw invalid(`calls[${i}]`, "must be an object");
    for (const k of Object.keys(c))
      if (k !== "items") throw invalid(`calls[${i}].${k}`, "is not a known field");
    return c;
  });
};
