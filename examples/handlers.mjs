// A handlers module for `fleetlink node --handlers examples/handlers.mjs` (docs/handlers.md): every exported
// function is a handler, called as handler(payload, ctx). An instruction can run more than once (its node
// crashed or lost its stream before the reply was stored, and the hub delivered it again, ctx.attempts higher),
// so a handler with a side effect records it under ctx.instructionId and, run again, answers what it answered.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.env.FLEETLINK_WORK_DIR ?? ".fleetlink";
mkdirSync(dir, { recursive: true });
const ledger = join(dir, "ledger.jsonl");

/** Each applied instruction's result, by instruction id, read back at start: a restart forgets nothing. */
const applied = new Map();
/** Balances by account, as the ledger has them. */
const balances = new Map();
const apply = (entry) => {
  applied.set(entry.instructionId, entry.result);
  balances.set(entry.result.account, entry.result.balance);
};
if (existsSync(ledger))
  for (const line of readFileSync(ledger, "utf8").split("\n")) if (line) apply(JSON.parse(line));

/** Adds `amount` to `account`, once per instruction however often it is delivered; answers the new balance. */
export function deposit({ account, amount }, ctx) {
  const done = applied.get(ctx.instructionId);
  if (done) return { ...done, replayed: true, attempts: ctx.attempts };
  const result = {
    account,
    balance: (balances.get(account) ?? 0) + amount,
    instructionId: ctx.instructionId,
    runId: ctx.runId,
    nodeId: ctx.nodeId,
  };
  // Written before the reply goes out: a crash after this line replays the result instead of paying twice.
  appendFileSync(ledger, `${JSON.stringify({ instructionId: ctx.instructionId, result })}\n`);
  apply({ instructionId: ctx.instructionId, result });
  return { ...result, replayed: false, attempts: ctx.attempts };
}

/** Long work that stops as soon as its instruction ends (call cancelled, deadline, withdrawn): ctx.signal. */
export async function crunch({ steps }, ctx) {
  for (let i = 0; i < steps; i++) {
    ctx.signal.throwIfAborted();
    await new Promise((r) => setTimeout(r, 10));
  }
  return { steps };
}
