import { newId } from "../../protocol/ids.ts";
import type { Instruction } from "../../protocol/types.ts";
import type { NewInstruction, ResolvedStoreOptions } from "../store.ts";

/**
 * The record a push makes of one item: pending, or already leased to `leaseTo` (one delivery counted, the lease
 * until now + leaseMs) when `leased` says its session is the node's current one.
 */
export const newInstructionRecord = (
  it: NewInstruction,
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
});
