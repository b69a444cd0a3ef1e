// The dispatcher over memoryPair: claims for the nodes it is woken for, respects maxInflight, and the push
// fast path sends a push's instructions without a claim.
import { describe, expect, test, vi } from "vitest";
import { nodeStreams, until } from "../helpers/node-streams.ts";

const item = (dst: string) => ({ dst, method: "m", ttlMs: 60_000, payload: new Uint8Array() });

describe("dispatcher", () => {
  test("dispatcher - a wake claims for that node; no more than maxInflight are in flight until replies free slots", async () => {
    const h = await nodeStreams({ maxInflight: 2 });
    const node = await h.register("n");
    const n = await h.connect(node);
    const run = await h.store.createRun();
    await h.store.pushInstructions(run.id, [item(node.id), item(node.id), item(node.id)]);
    h.streams.wake(node.id);
    await until(() => n.instructions.length === 2);
    await new Promise((r) => setTimeout(r, 30));
    expect(n.instructions).toHaveLength(2);
    // A reply frees a slot: the third is sent.
    const first = n.instructions[0]!;
    await n.ch.request("reply", {
      id: crypto.randomUUID(),
      runId: run.id,
      replyTo: first.id,
      payload: 1,
      error: null,
    });
    await until(() => n.instructions.length === 3);
  });

  test("dispatcher - the push fast path: items for a node here are inserted leased to its stream and sent without a claim", async () => {
    const h = await nodeStreams();
    const node = await h.register("fast");
    const n = await h.connect(node);
    const claims = vi.spyOn(h.store, "claimInstructions");
    const run = await h.store.createRun();
    const lease = h.streams.lease([item(node.id), item("00000000-0000-7000-8000-000000000000")]);
    expect(lease.items[0]!.leaseTo).toBeDefined();
    expect(lease.items[1]!.leaseTo).toBeUndefined();
    const pushed = await h.store.pushInstructions(run.id, lease.items.slice(0, 1));
    lease.settle(pushed);
    await until(() => n.instructions.length === 1);
    expect(n.instructions[0]!.id).toBe(pushed[0]!.id);
    expect(claims).not.toHaveBeenCalled();
  });

  test("dispatcher - a reply frees a slot without a claim when the node's last claim left nothing behind", async () => {
    const h = await nodeStreams();
    const node = await h.register("drained");
    const claims = vi.spyOn(h.store, "claimInstructions");
    const n = await h.connect(node);
    const run = await h.store.createRun();
    const call = async (k: number) => {
      const lease = h.streams.lease([item(node.id)]);
      const pushed = await h.store.pushInstructions(run.id, lease.items);
      lease.settle(pushed);
      await until(() => n.instructions.length === k + 1);
      await n.ch.request("reply", {
        id: crypto.randomUUID(),
        runId: run.id,
        replyTo: pushed[0]!.id,
        payload: k,
        error: null,
      });
    };
    // The first reply's freed slot is claimed for, and the claim finds nothing: the session is drained.
    await call(0);
    await until(() => claims.mock.calls.length === 1);
    await new Promise((r) => setTimeout(r, 20));
    const after = claims.mock.calls.length;
    for (let k = 1; k < 4; k++) await call(k);
    await new Promise((r) => setTimeout(r, 30));
    expect(claims.mock.calls.length).toBe(after);
    // Work that arrives another way (a push not through this replica's fast path) wakes it, and is claimed.
    await h.store.pushInstructions(run.id, [item(node.id)]);
    h.streams.wake(node.id);
    await until(() => n.instructions.length === 5);
    expect(claims.mock.calls.length).toBe(after + 1);
  });

  test("dispatcher - a node that asks for instruction events in hello gets a claim's instructions as one event, in order; others get a request each", async () => {
    const h = await nodeStreams();
    const [a, b] = [await h.register("events"), await h.register("requests")];
    const na = await h.connect(a, true, true);
    const nb = await h.connect(b);
    const run = await h.store.createRun();
    const pushed = await h.store.pushInstructions(run.id, [
      ...[1, 2, 3].map(() => item(a.id)),
      ...[1, 2, 3].map(() => item(b.id)),
    ]);
    h.streams.wake();
    await until(() => na.instructions.length === 3 && nb.instructions.length === 3);
    expect(na.frames).toBe(1);
    expect(na.instructions.map((i) => i.id)).toEqual(pushed.filter((p) => p.dst === a.id).map((p) => p.id));
    expect(nb.frames).toBe(3);
    expect(h.streams.inflight).toBe(6);
    // The reply is the answer: it frees the slot as for a request that was acknowledged.
    await na.ch.request("reply", {
      id: crypto.randomUUID(),
      runId: run.id,
      replyTo: na.instructions[0]!.id,
      payload: 1,
      error: null,
    });
    await until(() => h.streams.inflight === 5);
  });

  test("dispatcher - an HTTP node session that asks for instruction events still gets requests (its polls acknowledge them)", async () => {
    const h = await nodeStreams();
    const node = await h.register("http-events");
    const n = await h.connect(node, true, true, true);
    const run = await h.store.createRun();
    await h.store.pushInstructions(run.id, [item(node.id), item(node.id)]);
    h.streams.wake(node.id);
    await until(() => n.instructions.length === 2);
    expect(n.frames).toBe(2);
  });
});
