// The hub side of cancellation on NodeStreams over memoryPair (no socket): the cancellation log read on a wake
// becomes one `cancel` event per node and code; ids a hello names that ended meanwhile get one at once.
import { describe, expect, test } from "vitest";
import { NodeStreams } from "../../src/hub/delivery/node-streams.ts";
import type { NodeRecord } from "../../src/protocol/types.ts";
import type { WireInstruction } from "../../src/protocol/wire.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";
import { Channel, silentLogger } from "../../src/stream/channel.ts";
import { memoryPair } from "../../src/stream/transport.ts";
import { until } from "../helpers/node-streams.ts";

const setup = async (shared?: Store) => {
  const store = shared ?? (await openStore("memory:"));
  const counted: [string, number][] = [];
  const streams = new NodeStreams({
    store,
    maxInflight: 32,
    deliveryTimeoutMs: 1000,
    log: silentLogger,
    onReply: () => {},
    onCancelled: (code, n) => counted.push([code, n]),
  });
  const connect = async (node: NodeRecord, inflight: string[] = []) => {
    const [mine, hubs] = memoryPair();
    const instructions: WireInstruction[] = [];
    const events: { m: string; b: { ids: string[]; code: string } }[] = [];
    let helloAnswered = false;
    let eventsBeforeAnswer = 0;
    const ch = new Channel(mine, {
      onRequest: (_m, b) => {
        instructions.push(b as WireInstruction);
        return { accepted: true };
      },
      onEvent: (m, b) => {
        events.push({ m, b: b as { ids: string[]; code: string } });
        if (!helloAnswered) eventsBeforeAnswer++;
      },
    });
    streams.accept(node, hubs);
    await ch.request("hello", { inflight, heartbeatIntervalMs: 1000 });
    helloAnswered = true;
    return { ch, instructions, events, eventsBeforeAnswer: () => eventsBeforeAnswer };
  };
  const register = (name: string) => store.registerNode({ name, heartbeatIntervalMs: 1000 });
  return { store, streams, connect, register, counted };
};

describe("cancel - node streams", () => {
  test("cancel - a withdraw of delivered instructions becomes one cancel event per node; undelivered ones none", async () => {
    const h = await setup();
    const [a, b] = [await h.register("a"), await h.register("b")];
    const na = await h.connect(a);
    const nb = await h.connect(b);
    // Let the start-up read of the log settle (it only finds where the log ends).
    await new Promise((r) => setTimeout(r, 50));
    const run = await h.store.createRun();
    await h.store.pushInstructions(run.id, [
      { dst: a.id, method: "m", ttlMs: 60_000 },
      { dst: a.id, method: "m", ttlMs: 60_000 },
      { dst: b.id, method: "m", ttlMs: 60_000 },
    ]);
    h.streams.wake();
    await until(() => na.instructions.length === 2 && nb.instructions.length === 1);
    expect(h.streams.inflight).toBe(3);
    const idsA = na.instructions.map((i) => i.id);
    expect(await h.store.withdrawInstructions(run.id, [...idsA])).toEqual(expect.arrayContaining(idsA));
    h.streams.cancelled();
    await until(() => na.events.length === 1);
    expect(na.events[0]!.m).toBe("cancel");
    expect(na.events[0]!.b.code).toBe("FLEETLINK_E_CANCELLED");
    expect([...na.events[0]!.b.ids].sort()).toEqual([...idsA].sort());
    // Forgotten from the session's in-flight set: the node has room again.
    expect(h.streams.inflight).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(nb.events).toEqual([]);
    expect(h.counted).toEqual([["FLEETLINK_E_CANCELLED", 2]]);
    // Read again: nothing new, nothing sent twice.
    h.streams.cancelled();
    await new Promise((r) => setTimeout(r, 50));
    expect(na.events).toHaveLength(1);
    h.streams.closeAll();
    await h.store.close();
  });

  test("cancel - a node that comes to another replica naming an instruction that ended meanwhile gets its cancel at once", async () => {
    // Two replicas' node streams over one store: the node's stream on A dies unseen (no close yet), its
    // instruction is withdrawn, and the node says hello on B with it in `inflight`.
    const a = await setup();
    const b = await setup(a.store);
    const node = await a.register("n");
    const onA = await a.connect(node);
    const run = await a.store.createRun();
    await a.store.pushInstructions(run.id, [
      { dst: node.id, method: "m", ttlMs: 60_000 },
      { dst: node.id, method: "m", ttlMs: 60_000 },
    ]);
    a.streams.wake();
    await until(() => onA.instructions.length === 2);
    const [ended, live] = onA.instructions.map((i) => i.id) as [string, string];
    await new Promise((r) => setTimeout(r, 50));
    expect(await a.store.withdrawInstructions(run.id, [ended])).toEqual([ended]);
    // B reads the log too (a store change wakes every replica) although it holds no stream of the node.
    b.streams.cancelled();
    await new Promise((r) => setTimeout(r, 50));
    const onB = await b.connect(node, [ended, live]);
    expect(onB.events).toEqual([{ m: "cancel", b: { ids: [ended], code: "FLEETLINK_E_CANCELLED" } }]);
    // Sent before the hello answer, so the node learns it before anything else on the new stream.
    expect(onB.eventsBeforeAnswer()).toBe(1);
    expect(b.streams.inflight).toBe(1);
    a.streams.closeAll();
    b.streams.closeAll();
    await a.store.close();
  });

  /**
   * Replica A delivers three instructions to the node, then `ended` and `known` are withdrawn (A's stream is left
   * as is): the node learned of `known` already and names only `ended` and `live` at its next hello.
   */
  const withdrawnOnA = async () => {
    const a = await setup();
    const node = await a.register("n");
    const onA = await a.connect(node);
    const run = await a.store.createRun();
    await a.store.pushInstructions(run.id, [
      { dst: node.id, method: "m", ttlMs: 60_000 },
      { dst: node.id, method: "m", ttlMs: 60_000 },
      { dst: node.id, method: "m", ttlMs: 60_000 },
    ]);
    a.streams.wake();
    await until(() => onA.instructions.length === 3);
    const [ended, live, known] = onA.instructions.map((i) => i.id) as [string, string, string];
    expect((await a.store.withdrawInstructions(run.id, [ended, known])).sort()).toEqual(
      [ended, known].sort(),
    );
    return { a, node, ended, live };
  };

  test("cancel - a replica started after the withdraw still cancels it at the hello of a node naming it", async () => {
    const { a, node, ended, live } = await withdrawnOnA();
    // B starts now (a restart, a scale-up): the entry was written before it existed and no wake will come.
    const b = await setup(a.store);
    await new Promise((r) => setTimeout(r, 50));
    const onB = await b.connect(node, [ended, live]);
    expect(onB.events).toEqual([{ m: "cancel", b: { ids: [ended], code: "FLEETLINK_E_CANCELLED" } }]);
    expect(onB.eventsBeforeAnswer()).toBe(1);
    expect(b.streams.inflight).toBe(1);
    a.streams.closeAll();
    b.streams.closeAll();
    await a.store.close();
  });

  test("cancel - a hello that races a starting replica's read of the log still gets its cancel, and only for ids it holds", async () => {
    const { a, node, ended, live } = await withdrawnOnA();
    // B's reads of the log wait until released: the hello completes before B has read anything.
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const gated = new Proxy(a.store, {
      get(t, k, r) {
        if (k !== "cancellationsSince") return Reflect.get(t, k, r);
        return async (...args: Parameters<Store["cancellationsSince"]>) => {
          await gate;
          return t.cancellationsSince(...args);
        };
      },
    });
    const b = await setup(gated);
    const onB = await b.connect(node, [ended, live]);
    expect(onB.events).toEqual([]);
    release();
    await until(() => onB.events.length === 1);
    expect(onB.events).toEqual([{ m: "cancel", b: { ids: [ended], code: "FLEETLINK_E_CANCELLED" } }]);
    expect(b.streams.inflight).toBe(1);
    // Read again (a wake): nothing sent twice.
    b.streams.cancelled();
    await new Promise((r) => setTimeout(r, 50));
    expect(onB.events).toHaveLength(1);
    a.streams.closeAll();
    b.streams.closeAll();
    await a.store.close();
  });

  test("cancel - an id a hello names whose reply was stored gets no cancel: the node resends that reply", async () => {
    const h = await setup();
    const node = await h.register("n");
    const first = await h.connect(node);
    const run = await h.store.createRun();
    await h.store.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: 60_000 }]);
    h.streams.wake();
    await until(() => first.instructions.length === 1);
    const id = first.instructions[0]!.id;
    await first.ch.request("reply", { id: crypto.randomUUID(), runId: run.id, replyTo: id, payload: 1 });
    first.ch.close();
    await new Promise((r) => setTimeout(r, 50));
    h.streams.cancelled();
    const again = await h.connect(node, [id]);
    await new Promise((r) => setTimeout(r, 100));
    expect(again.events).toEqual([]);
    h.streams.closeAll();
    await h.store.close();
  });
});
