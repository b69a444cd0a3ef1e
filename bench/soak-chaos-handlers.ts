// Handlers for the node processes of `npm run soak:chaos`. COUNT_FILE records every handler run (one
// instruction id per line), so the soak can tell a handler that ran twice for one instruction.
import { appendFileSync } from "node:fs";

const record = (id: string) => {
  if (process.env.COUNT_FILE) appendFileSync(process.env.COUNT_FILE, `${id}\n`);
};

export const handlers = {
  echo: (p: unknown, ctx: { instructionId: string }) => {
    record(ctx.instructionId);
    return p;
  },
  /** A result larger than the hub's payload limit: the agent must answer PAYLOAD_TOO_LARGE instead. */
  big: (p: unknown, ctx: { instructionId: string }) => {
    record(ctx.instructionId);
    return "b".repeat(Number(p));
  },
};
