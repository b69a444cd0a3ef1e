import { newId } from "../../protocol/ids.ts";
import { checkTraceparent } from "../../protocol/trace-context.ts";
import type { Instruction } from "../../protocol/types.ts";
import type { NewInstruction, NewReply, ResolvedStoreOptions } from "../store.ts";

/** An item of a push with the W3C trace context it may carry (docs/tracing.md); null or absent: none. */
export type TracedInstruction = NewInstruction & { traceparent?: string | null };
/** A reply with the trace context its node sent back; null or absent: none. */
export type TracedReply = NewReply & { traceparent?: string | null };

/** The trace context of each item, checked: INVALID_ARGUMENT naming `items[i].traceparent`. */
export const checkTraces = (items: readonly (TracedInstruction | TracedReply)[]): void => {
  for (const [i, it] of items.entries())
    if (it.traceparent != null) checkTraceparent(`items[${i}].traceparent`, it.traceparent);
};

/**
 * The record a push makes of one item: pending, or already leased to `leaseTo` (one delivery counted, the lease
 * until now + leaseMs) when `leased` says its session is the node's current one.
 */
export const newInstructionRecord = (
  it: TracedInstruction,
  runId: string,
  now: number,
  leased: boolean,
  options: Pick<ResolvedStoreOptions, "leaseMs" | "maxAttempts">,
): Instruction => ({
  id: it.id ?? newId(),
  runId,
  src: it.src ?? "coordinator",
  dst: it.dst,
  groupId: it.groupId ?? null,
  method: it.method,
  payload: it.payload ?? new Uint8Array(0),
  createdAt: now,
  ttlMs: it.ttlMs,
  expiresAt: now + it.ttlMs,
  state: leased ? "leased" : "pending",
  attempts: leased ? 1 : 0,
  maxAttempts: it.maxAttempts ?? options.maxAttempts,
  leaseUntil: leased ? now + Math.trunc(options.leaseMs) : null,
  leaseOwner: leased ? it.leaseTo! : null,
  holdWhileOffline: it.holdWhileOffline ?? false,
  traceparent: it.traceparent ?? null,
});
