// Sessions of the hub's node streams, over memoryPair (no socket): hello, replacement, fencing, closing.
import { describe, expect, test } from "vitest";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { nodeStreams, until } from "../helpers/node-streams.ts";

describe("node streams", () => {
  test("sessions - hello makes the stream the node's session; a newer stream of the node replaces it (close code replaced)", async () => {
    const h = await nodeStreams();
    const node = await h.register("n1");
    const first = await h.connect(node);
    expect(h.streams.connectedIds()).toEqual([node.id]);
    expect((await h.store.getSessions([node.id])).get(node.id)).toBeDefined();
    const second = await h.connect(node);
    expect(await first.closed).toBe(CloseCode.replaced);
    expect(second.ch.isOpen).toBe(true);
    expect(h.streams.connected).toBe(1);
    // A second hello on the same stream is refused.
    await expect(second.ch.request("hello", { inflight: [] })).rejects.toMatchObject({ field: "m" });
  });

  test("sessions - a stream that says no hello in time is closed (policy); requests before hello are refused", async () => {
    const h = await nodeStreams({ helloTimeoutMs: 50 });
    const node = await h.register("quiet");
    const n = await h.connect(node, false);
    await expect(n.ch.request("heartbeat", {})).rejects.toMatchObject({
      code: "FLEETLINK_E_INVALID_ARGUMENT",
    });
    expect(await n.closed).toBe(CloseCode.policy);
    expect(h.streams.connected).toBe(0);
  });

  test("sessions - closeNode closes with revoked, closeAll with goingAway, and a closed stream's leases are released", async () => {
    const h = await nodeStreams();
    const [a, b] = [await h.register("a"), await h.register("b")];
    const na = await h.connect(a);
    const nb = await h.connect(b);
    const run = await h.store.createRun();
    await h.store.pushInstructions(run.id, [
      { dst: a.id, method: "m", ttlMs: 60_000, payload: new Uint8Array() },
    ]);
    h.streams.wake(a.id);
    await until(() => na.instructions.length === 1);
    expect(h.streams.inflight).toBe(1);
    h.streams.closeNode(a.id, "node unregistered");
    expect(await na.closed).toBe(CloseCode.revoked);
    // Released at once: claimable again, not after the lease.
    await until(() => h.streams.connected === 1);
    await expect.poll(async () => (await h.store.claimableNodes(10)).includes(a.id)).toBe(true);
    h.streams.closeAll();
    expect(await nb.closed).toBe(CloseCode.goingAway);
  });
});
