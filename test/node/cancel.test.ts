// The agent's side of cancellation, on its own pieces (executor, outbox): a `cancel` aborts the handler's
// signal with the code as a FleetlinkError, drops its result and any reply still waiting in the outbox.
import { describe, expect, test } from "vitest";
import { Executor } from "../../src/node/executor.ts";
import type { Handler } from "../../src/node/handler.ts";
import { Outbox } from "../../src/node/outbox.ts";
import { FleetlinkError } from "../../src/protocol/errors.ts";
import { newId } from "../../src/protocol/ids.ts";
import type { WireInstruction } from "../../src/protocol/wire.ts";
import { silentLogger } from "../../src/stream/channel.ts";

const instruction = (method: string): WireInstruction => ({
  id: newId(),
  runId: newId(),
  method,
  payload: null,
  groupId: null,
  attempts: 1,
  expiresAt: Date.now() + 60_000,
});

/** An executor whose outbox has no hub: every reply waits in it, where the test can see it. */
const setup = (handlers: Record<string, Handler>, stop = new AbortController()) => {
  const outbox = new Outbox({
    channel: () => null,
    timeoutMs: 1000,
    retry: { initialMs: 100, maxMs: 100 },
    remember: 10,
    log: silentLogger,
  });
  const executor = new Executor({
    handlers,
    outbox,
    nodeId: () => newId(),
    maxPayloadBytes: () => 1 << 20,
    signal: stop.signal,
    log: silentLogger,
  });
  return { outbox, executor, stop };
};

describe("agent cancel", () => {
  test("cancel - aborts the handler's signal with the code as reason; its result is not queued", async () => {
    let signal: AbortSignal | undefined;
    const { outbox, executor } = setup({
      work: (_p, ctx) => {
        signal = ctx.signal;
        return new Promise((r) => ctx.signal.addEventListener("abort", () => r("after abort")));
      },
    });
    const ins = instruction("work");
    executor.accept(ins);
    expect(executor.workingIds()).toEqual([ins.id]);
    expect(executor.cancel([ins.id], "FLEETLINK_E_MESSAGE_EXPIRED")).toBe(1);
    expect(signal!.aborted).toBe(true);
    expect(signal!.reason).toBeInstanceOf(FleetlinkError);
    expect((signal!.reason as FleetlinkError).code).toBe("FLEETLINK_E_MESSAGE_EXPIRED");
    // Cancelled but still settling: no longer reported as worked on (hello, progress).
    expect(executor.workingIds()).toEqual([]);
    await executor.settled();
    expect(outbox.has(ins.id)).toBe(false);
    expect(outbox.size).toBe(0);
  });

  test("cancel - an unknown code still aborts, as CANCELLED; unknown ids are ignored", async () => {
    let signal: AbortSignal | undefined;
    const { executor } = setup({
      work: (_p, ctx) => {
        signal = ctx.signal;
        return new Promise((r) => ctx.signal.addEventListener("abort", () => r(null)));
      },
    });
    const ins = instruction("work");
    executor.accept(ins);
    expect(executor.cancel([newId()], "FLEETLINK_E_CANCELLED")).toBe(0);
    expect(signal!.aborted).toBe(false);
    executor.cancel([ins.id], "SOMETHING_ELSE");
    expect((signal!.reason as FleetlinkError).code).toBe("FLEETLINK_E_CANCELLED");
    await executor.settled();
  });

  test("cancel - a reply already waiting in the outbox is dropped", async () => {
    const { outbox, executor } = setup({ work: () => "done" });
    const ins = instruction("work");
    executor.accept(ins);
    await executor.settled();
    expect(outbox.has(ins.id)).toBe(true);
    expect(executor.cancel([ins.id], "FLEETLINK_E_CANCELLED")).toBe(1);
    expect(outbox.has(ins.id)).toBe(false);
    await outbox.drained();
  });

  test("cancel - a handler ignoring its signal runs to the end; its late result is dropped", async () => {
    let finished = false;
    const { outbox, executor } = setup({
      work: async () => {
        await new Promise((r) => setTimeout(r, 100));
        finished = true;
        return "late";
      },
    });
    const ins = instruction("work");
    executor.accept(ins);
    executor.cancel([ins.id], "FLEETLINK_E_CANCELLED");
    await executor.settled();
    expect(finished).toBe(true);
    expect(outbox.size).toBe(0);
  });

  test("cancel - the agent stopping still aborts every handler's signal", async () => {
    let signal: AbortSignal | undefined;
    const { executor, stop } = setup({
      work: (_p, ctx) => {
        signal = ctx.signal;
        return new Promise((r) => ctx.signal.addEventListener("abort", () => r(null)));
      },
    });
    executor.accept(instruction("work"));
    stop.abort("agent stopped");
    expect(signal!.aborted).toBe(true);
    expect(signal!.reason).toBe("agent stopped");
    await executor.settled();
  });
});
