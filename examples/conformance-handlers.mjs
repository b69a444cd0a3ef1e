// The conformance handlers (docs/conformance.md) for the TypeScript node agent:
//   fleetlink conformance node --bin 'fleetlink node --handlers examples/conformance-handlers.mjs --identity "$FLEETLINK_WORK_DIR/identity.json"'
// Every handler run first appends "start <instructionId> <method>" to $FLEETLINK_WORK_DIR/calls.log: the kit
// counts executions from it.
import { appendFileSync } from "node:fs";
import { join } from "node:path";

const log = join(process.env.FLEETLINK_WORK_DIR ?? ".", "calls.log");
const started = (ctx) => appendFileSync(log, `start ${ctx.instructionId} ${ctx.method}\n`);

export const handlers = {
  echo(payload, ctx) {
    started(ctx);
    return payload;
  },
  fail(payload, ctx) {
    started(ctx);
    throw new Error(String(payload?.message ?? "failed on purpose"));
  },
  async sleep(payload, ctx) {
    started(ctx);
    const ms = Number(payload?.ms ?? 0);
    await new Promise((r) => setTimeout(r, ms));
    return { slept: ms };
  },
};
