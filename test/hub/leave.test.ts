// A graceful leave: the node goes offline at once (its calls end NODE_UNAVAILABLE through the sweep, not after
// its heartbeat window), its leases go back, the hub closes the stream with 1000, and a later hello brings it
// back. Over memoryPair for the hub's side, over real sockets with the agent and a coordinator for the rest.
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { IncompleteCallError } from "../../src/coordinator/errors.ts";
import { NodeAgent } from "../../src/node/agent.ts";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet } from "../helpers/fleet.ts";
import { nodeStreams, until } from "../helpers/node-streams.ts";

let f: TestFleet | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

describe("leave", () => {
  test("leave - the hub answers left, gives back the node's leases, marks it offline and closes the stream with 1000", async () => {
    const h = await nodeStreams();
    const node = await h.register("leaver");
    const n = await h.connect(node);
    const run = await h.store.createRun();
    await h.store.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: 60_000 }]);
    h.streams.wake(node.id);
    await until(() => n.instructions.length === 1);
    expect(await n.ch.request("leave", {})).toEqual({ left: true });
    expect(await n.closed).toBe(CloseCode.normal);
    expect(await h.store.getNode(node.id)).toMatchObject({ status: "offline" });
    const [i] = await h.store.getInstructions(run.id, [n.instructions[0]!.id]);
    // Given back (then ended by the sweep, since the node is offline): no longer leased to the session.
    expect(i?.leaseOwner).toBeNull();
    expect(h.streams.connected).toBe(0);
  });

  test("leave - leave before hello is refused; nothing changes", async () => {
    const h = await nodeStreams();
    const node = await h.register("early");
    const n = await h.connect(node, false);
    await expect(n.ch.request("leave", {})).rejects.toMatchObject({
      code: "FLEETLINK_E_INVALID_ARGUMENT",
      field: "m",
    });
    expect(await h.store.getNode(node.id)).toMatchObject({ status: "registered" });
    n.ch.close();
  });

  test("leave - a call in flight to a node that stops ends NODE_UNAVAILABLE within about a second, not after its heartbeat window", async () => {
    f = await startFleet();
    let started!: () => void;
    const running = new Promise<void>((r) => {
      started = r;
    });
    // A 5 s heartbeat: without the leave the hub would keep the node online for 10 s.
    const agent = await f.node(
      "stopper",
      {
        hang: () => {
          started();
          return new Promise(() => {});
        },
      },
      { heartbeatIntervalMs: 5000 },
    );
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const call = run
      .configuration([agent.nodeId!])
      .call("hang", null, { quorum: "all", timeoutMs: 20_000 })
      .catch((e: unknown) => e);
    await running;
    const t0 = Date.now();
    await agent.stop({ timeoutMs: 100 });
    const err = await call;
    const took = Date.now() - t0;
    expect(err).toBeInstanceOf(IncompleteCallError);
    expect((err as IncompleteCallError).errors.get(agent.nodeId!)?.code).toBe("FLEETLINK_E_NODE_UNAVAILABLE");
    expect(took).toBeLessThan(1500);
    expect(await f.store.getNode(agent.nodeId!)).toMatchObject({ status: "offline" });
  });

  test("leave - a node that left comes back online with its next hello and takes calls again", async () => {
    f = await startFleet();
    const identityFile = join(f.dir, "identity.json");
    const handlers = { echo: (p: unknown) => p };
    const first = new NodeAgent({
      hubs: [f.url],
      name: "back",
      enrollToken: ENROLL_TOKEN,
      identityFile,
      handlers,
    });
    await first.start();
    await first.stop({ timeoutMs: 1000 });
    expect(await f.store.getNode(first.nodeId!)).toMatchObject({ status: "offline" });
    const again = await f.node("back", handlers, { identityFile });
    expect(again.nodeId).toBe(first.nodeId);
    expect(await f.store.getNode(again.nodeId!)).toMatchObject({ status: "online" });
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const res = await run.configuration([again.nodeId!]).call("echo", 7, { quorum: "all", timeoutMs: 5000 });
    expect(res.replies.get(again.nodeId!)).toBe(7);
  });
});
