/**
 * The hub's spans (with `@opentelemetry/api` installed and loaded, see util/tracing.ts): each hangs under the
 * trace context an instruction or reply carries, so nothing is traced that the caller did not trace. Every
 * helper is a no-op (one property read per item) for untraced work or without the API.
 */
import type { Instruction } from "../../protocol/types.ts";
import type { TracedInstruction } from "../../store/ops/instruction-record.ts";
import { otelLoaded, startSpan, type TraceSpan } from "../../util/tracing.ts";

/** `fleetlink.push` on the hub: one call's push (its items share the caller's context; the first one's is used). */
export const pushSpan = (runId: string, items: readonly TracedInstruction[]): TraceSpan | undefined => {
  if (!otelLoaded()) return undefined;
  const parent = items.find((i) => i.traceparent)?.traceparent;
  return parent
    ? startSpan("fleetlink.push", {
        parent,
        kind: "server",
        attributes: { "fleetlink.run": runId, "fleetlink.instructions": items.length },
      })
    : undefined;
};

/**
 * `fleetlink.claim`: the claim that leased these instructions, from `since` (ms) to now, one per traced one. For
 * a push (`path` "push"), only the items it inserted already leased count: the others are claimed later.
 */
export const claimSpans = (got: readonly Instruction[], since: number, path: "claim" | "push"): void => {
  if (!otelLoaded()) return;
  for (const ins of got)
    if (ins.traceparent && (path === "claim" || ins.state === "leased"))
      startSpan("fleetlink.claim", {
        parent: ins.traceparent,
        kind: "internal",
        startTime: since,
        attributes: {
          "fleetlink.instruction": ins.id,
          "fleetlink.node": ins.dst,
          "fleetlink.attempts": ins.attempts,
          "fleetlink.claim.path": path,
        },
      })?.end();
};

/** `fleetlink.deliver`: an instruction sent down its node's stream (ended when sent, or when acknowledged). */
export const deliverSpan = (ins: Instruction): TraceSpan | undefined =>
  ins.traceparent && otelLoaded()
    ? startSpan("fleetlink.deliver", {
        parent: ins.traceparent,
        kind: "producer",
        attributes: { "fleetlink.instruction": ins.id, "fleetlink.node": ins.dst },
      })
    : undefined;
