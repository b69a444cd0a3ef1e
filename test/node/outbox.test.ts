import { describe, expect, test } from "vitest";
import { Executor } from "../../src/node/executor.ts";
import { Outbox } from "../../src/node/outbox.ts";
import { FleetlinkError } from "../../src/protocol/errors.ts";
import { newId } from "../../src/protocol/ids.ts";
import type { WireInstruction, WireReply } from "../../src/protocol/wire.ts";
import { Channel, silentLogger } from "../../src/stream/channel.ts";
import { memoryPair } from "../../src/stream/transport.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A fake hub over memoryPair whose reply handler is given per test; returns the agent side's channel. */
const hub = (onReply: (r: WireReply) => unknown) => {
  const [a, b] = memoryPair();
  new Channel(b, { onRequest: (m, body) => (m === "reply" ? onReply(body as WireReply) : null) });
  return new Channel(a);
};

const reply = (replyTo = newId()): WireReply => ({
  id: newId(),
  runId: newId(),
  replyTo,
  payload: "p",
  error: null,
});

describe("outbox", () => {
  test("outbox - after close, a send that fails (the agent stopped mid-send) is not retried", async () => {
    let answers = 0;
    let fail: (() => void) | undefined;
    const ch = hub(() => {
      answers++;
      return new Promise((_, reject) => {
        fail = () => reject(new FleetlinkError("STORE_UNAVAILABLE", "blip"));
      });
    });
    const box = new Outbox({
      channel: () => ch,
      timeoutMs: 1000,
      retry: { initialMs: 5, maxMs: 5, jitter: 0 },
      remember: 2,
      log: silentLogger,
    });
    box.queue(reply());
    while (!fail) await sleep(2);
    box.close();
    fail();
    await sleep(50); // ten retry intervals
    expect(answers).toBe(1);
    box.flush();
    await sleep(20);
    expect(answers).toBe(1);
  });

  test("outbox - a reply is resent with backoff until acknowledged, waits while there is no channel, and is remembered", async () => {
    let answers = 0;
    let ch: Channel | null = null;
    const box = new Outbox({
      channel: () => ch,
      timeoutMs: 200,
      retry: { initialMs: 5, maxMs: 10, jitter: 0 },
      remember: 2,
      log: silentLogger,
    });
    const r = reply();
    box.queue(r);
    expect(box.size).toBe(1);
    expect([...box.keys()]).toEqual([r.replyTo]);
    await sleep(20);
    // No channel yet: nothing sent; flush sends once one is live. The hub fails twice (a store blip).
    ch = hub(() => {
      answers++;
      if (answers < 3) throw new FleetlinkError("STORE_UNAVAILABLE", "blip");
      return { ok: true };
    });
    box.flush();
    await box.drained();
    expect(answers).toBe(3);
    expect(box.size).toBe(0);
    expect(box.done(r.replyTo)).toEqual(r);
    // Queued twice: one send.
    const r2 = reply();
    box.queue(r2);
    box.queue({ ...r2, id: newId() });
    await box.drained();
    expect(answers).toBe(4);
    // Only the last `remember` replies are kept.
    box.queue(reply());
    await box.drained();
    expect(box.done(r.replyTo)).toBeUndefined();
    expect(box.done(r2.replyTo)).toBeDefined();
  });

  test("outbox - a definite refusal ends the retries (the reply is settled, not resent forever)", async () => {
    let answers = 0;
    const ch = hub(() => {
      answers++;
      throw new FleetlinkError("INVALID_ARGUMENT", "bad reply", { field: "id" });
    });
    const box = new Outbox({
      channel: () => ch,
      timeoutMs: 200,
      retry: { initialMs: 5, maxMs: 5 },
      remember: 10,
      log: silentLogger,
    });
    box.queue(reply());
    await box.drained();
    await sleep(30);
    expect(answers).toBe(1);
  });
});

describe("executor", () => {
  const ins = (method: string, id = newId()): WireInstruction =>
    ({ id, runId: newId(), method, payload: 21, attempts: 1 }) as WireInstruction;

  test("executor - runs an instruction once however often it is delivered, and answers a redelivery after its reply with the same reply", async () => {
    const sent: WireReply[] = [];
    const ch = hub((r) => {
      sent.push(r);
      return { ok: true };
    });
    const outbox = new Outbox({
      channel: () => ch,
      timeoutMs: 200,
      retry: { initialMs: 5, maxMs: 5 },
      remember: 10,
      log: silentLogger,
    });
    let runs = 0;
    const ex = new Executor({
      handlers: {
        double: async (p) => {
          runs++;
          await sleep(20);
          return (p as number) * 2;
        },
        huge: () => "x".repeat(200),
        cyclic: () => {
          const o: Record<string, unknown> = {};
          o.self = o;
          return o;
        },
      },
      outbox,
      nodeId: () => "n1",
      maxPayloadBytes: () => 100,
      signal: new AbortController().signal,
      log: silentLogger,
    });
    const one = ins("double");
    ex.accept(one);
    ex.accept(one); // redelivered while running
    expect(ex.runningIds()).toEqual([one.id]);
    await ex.settled();
    await outbox.drained();
    ex.accept(one); // redelivered after the reply
    await outbox.drained();
    expect(runs).toBe(1);
    expect(sent.map((r) => r.payload)).toEqual([42, 42]);
    expect(sent[0]!.id).toBe(sent[1]!.id);

    // Results that cannot travel become error replies, never silence; an unknown method too.
    for (const m of ["huge", "cyclic", "nope"]) ex.accept(ins(m));
    await ex.settled();
    await outbox.drained();
    expect(
      sent
        .slice(2)
        .map((r) => r.error?.code)
        .sort(),
    ).toEqual([
      "FLEETLINK_E_HANDLER_FAILED",
      "FLEETLINK_E_INVALID_ARGUMENT",
      "FLEETLINK_E_PAYLOAD_TOO_LARGE",
    ]);
  });
});
