import { describe, expect, test } from "vitest";
import { newId } from "../../src/protocol/ids.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { type StoreFactory, useStore } from "./factory.ts";

/** A graceful leave (`leaveSession`) and the agent a session records (`openSession` with `agent`). */
export const leaveConformance = (factory: StoreFactory): void => {
  describe("leave", () => {
    const t = useStore(factory);

    test("leave - the current session's leave marks the node offline now, gives back its leases, and the sweep ends its calls NODE_UNAVAILABLE", async () => {
      const { store } = t;
      const run = await store.createRun();
      const node = await t.onlineNode("leaver");
      const ins = await store.pushInstructions(
        run.id,
        [1, 2].map(() => ({ dst: node.id, method: "m", ttlMs: 60_000 })),
      );
      await store.openSession({ nodeId: node.id, sessionId: "s1" });
      await store.claimInstructions({ sessions: [{ nodeId: node.id, sessionId: "s1" }], limit: 1 });
      expect(await store.leaveSession({ nodeId: node.id, sessionId: "s1" })).toEqual({
        left: true,
        released: 1,
      });
      expect(await store.getNode(node.id)).toMatchObject({ status: "offline", onlineUntil: t.clock() });
      expect((await store.getSessions([node.id])).get(node.id)).toBeNull();
      // Its online window was a minute long; the leave ended it, so no time needs to pass.
      expect(await store.sweep()).toBe(2);
      const got = await store.getInstructions(
        run.id,
        ins.map((i) => i.id),
      );
      expect(got.map((i) => i.state)).toEqual(["done", "done"]);
      const replies = await store.claimReplies({ runId: run.id, limit: 10 });
      expect(replies.map((r) => r.error?.code)).toEqual([
        "FLEETLINK_E_NODE_UNAVAILABLE",
        "FLEETLINK_E_NODE_UNAVAILABLE",
      ]);
    });

    test("leave - a superseded session's leave changes nothing; a late heartbeat of the left session revives nothing; a new session brings the node back", async () => {
      const { store } = t;
      const node = await t.onlineNode("twice");
      await store.openSession({ nodeId: node.id, sessionId: "old" });
      await store.openSession({ nodeId: node.id, sessionId: "new" });
      expect(await store.leaveSession({ nodeId: node.id, sessionId: "old" })).toEqual({
        left: false,
        released: 0,
      });
      expect(await store.getNode(node.id)).toMatchObject({ status: "online" });
      expect((await store.getSessions([node.id])).get(node.id)).toBe("new");

      expect((await store.leaveSession({ nodeId: node.id, sessionId: "new" })).left).toBe(true);
      const renewed = await store.renewSessions([{ nodeId: node.id, sessionId: "new", ageMs: 0 }]);
      expect(renewed.size).toBe(0);
      expect(await store.getNode(node.id)).toMatchObject({ status: "offline" });

      const { node: back } = await store.openSession({ nodeId: node.id, sessionId: "again" });
      expect(back.status).toBe("online");
      expect(back.onlineUntil).toBeGreaterThan(t.clock());
    });

    test("leave - an unknown node is NODE_NOT_FOUND; a bad input is INVALID_ARGUMENT", async () => {
      await rejectsWith(t.store.leaveSession({ nodeId: newId(), sessionId: "s" }), "NODE_NOT_FOUND");
      await rejectsWith(t.store.leaveSession({ nodeId: "not-an-id", sessionId: "s" }), "INVALID_ARGUMENT");
    });

    test("agent - openSession records the agent and protocol the hello named; a hello naming none records none", async () => {
      const { store } = t;
      const node = await t.onlineNode("agent");
      expect(node.agent).toBeNull();
      const { node: named } = await store.openSession({
        nodeId: node.id,
        sessionId: "s1",
        agent: { name: "fleetlink-py", version: "0.2.0" },
        protocol: 1,
      });
      expect(named.agent).toEqual({ name: "fleetlink-py", version: "0.2.0", protocol: 1 });
      expect((await store.listNodes()).find((n) => n.id === node.id)?.agent).toEqual(named.agent);
      const { node: anonymous } = await store.openSession({ nodeId: node.id, sessionId: "s2" });
      expect(anonymous.agent).toBeNull();
      await rejectsWith(
        store.openSession({ nodeId: node.id, sessionId: "s3", agent: { name: "", version: "1" } }),
        "INVALID_ARGUMENT",
      );
    });
  });
};
