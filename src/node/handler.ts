import type { HandlerBlobs } from "../blob/handle.ts";

/** What a handler is told about the instruction it runs. */
export interface HandlerContext {
  /** Blob uploads and handles for this instruction's run (set by the NodeAgent for every handler it runs). */
  blobs?: HandlerBlobs;
  instructionId: string;
  runId: string;
  method: string;
  attempts: number;
  nodeId: string;
  /**
   * Aborted when the agent stops without waiting, or when the hub cancels this instruction (withdrawn, call
   * cancelled, expired…): then `signal.reason` is a FleetlinkError whose code says why, and the handler's result
   * is dropped (no reply), so it may stop at once. A handler that ignores it runs on; its result is dropped.
   */
  signal: AbortSignal;
  /**
   * The W3C trace context the call was made in (the coordinator's `fleetlink.push` span, or the traceparent it
   * was given), absent for an untraced call. With `@opentelemetry/api` installed, the handler also runs inside
   * a `fleetlink.handle` span under it, so spans it starts join the caller's trace.
   */
  traceparent?: string;
}

/** Runs one instruction: its result becomes the reply's result; a thrown error becomes an error reply. */
export type Handler = (payload: unknown, ctx: HandlerContext) => unknown | Promise<unknown>;
