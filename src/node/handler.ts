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
}

/** Runs one instruction: its result becomes the reply's result; a thrown error becomes an error reply. */
export type Handler = (payload: unknown, ctx: HandlerContext) => unknown | Promise<unknown>;
