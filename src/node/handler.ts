/** What a handler is told about the instruction it runs. */
export interface HandlerContext {
  instructionId: string;
  runId: string;
  method: string;
  attempts: number;
  nodeId: string;
  /** Aborted when the agent stops without waiting. */
  signal: AbortSignal;
}

/** Runs one instruction: its result becomes the reply's result; a thrown error becomes an error reply. */
export type Handler = (payload: unknown, ctx: HandlerContext) => unknown | Promise<unknown>;
