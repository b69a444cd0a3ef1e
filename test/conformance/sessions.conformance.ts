import { describe, expect, test } from "vitest";
import { newId } from "../../src/protocol/ids.ts";
import { storeReply } from "../../src/store/store.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { LEASE, type StoreFactory, useStore } from "./factory.ts";

/** Sessions fence a node's superseded streams: what they claim, heartbeat or extend. */
export const sessionConformance = (factory: StoreFactory): void => {
  describe("sessions", () => {
    const t = useStore(factory);
    const setup = async (n = 3, extra: Record<string, unknown> = {}) => {
      const run = await t.store.createRun();
      const node = await t.onlineNode("a");
      const ins = await t.store.pushInstructions(
        run.id,
        Array.from({ length: n }, () => ({ dst: node.id, method: "m", ttlMs: 60_000, ...extra })),
      );
      return { run, node, ins };
    };
    const owners = async (runId: string, ids: string[]) =>
      (await t.store.getInstructions(runId, ids)).map((i) => [i.state, i.leaseOwner]);

    test("session - a claim for a superseded session takes nothing; the current one holds its leases", async () => {
      const { store } = t;
      const { node, ins } = await setup(3);
      await store.openSession({ nodeId: node.id, sessionId: "s1" });
      expect((await store.getSessions([node.id, newId()])).get(node.id)).toBe("s1");
      const [a] = await store.claimInstructions({
        sessions: [{ nodeId: node.id, sessionId: "s1" }],
        limit: 1,
      });
      expect(a).toMatchObject({
        id: ins[0]!.id,
        leaseOwner: "s1",
        attempts: 1,
        leaseUntil: t.clock() + LEASE,
      });
      const opened = await store.openSession({ nodeId: node.id, sessionId: "s2" });
      expect(opened.released).toBe(1);
      expect(await store.getSessions([node.id])).toEqual(new Map([[node.id, "s2"]]));
      expect(
        await store.claimInstructions({ sessions: [{ nodeId: node.id, sessionId: "s1" }], limit: 5 }),
      ).toEqual([]);
      const got = await store.claimInstructions({
        sessions: [{ nodeId: node.id, sessionId: "s2" }],
        limit: 5,
      });
      expect(got.map((i) => [i.id, i.leaseOwner])).toEqual(ins.map((i) => [i.id, "s2"]));
      expect(got[0]!.attempts).toBe(2);
      // The old stream's late cleanup releases nothing of the new session's.
      expect(await store.releaseInstructions({ nodeId: node.id, owner: "s1" })).toBe(0);
      expect(await store.releaseInstructions({ nodeId: node.id, owner: "s2" })).toBe(3);
    });

    test("session - a claim for many sessions claims only for the nodes whose session it names", async () => {
      const { store } = t;
      const run = await store.createRun();
      const [a, b, c] = [await t.onlineNode("a"), await t.onlineNode("b"), await t.onlineNode("c")];
      for (const n of [a!, b!, c!])
        await store.pushInstructions(run.id, [
          { dst: n.id, method: "m", ttlMs: 60_000 },
          { dst: n.id, method: "m", ttlMs: 60_000 },
        ]);
      await store.openSession({ nodeId: a!.id, sessionId: "sa" });
      await store.openSession({ nodeId: b!.id, sessionId: "sb-new" });
      const got = await store.claimInstructions({
        sessions: [
          { nodeId: a!.id, sessionId: "sa" },
          { nodeId: b!.id, sessionId: "sb-old" },
          { nodeId: c!.id, sessionId: "sc" },
        ],
        limit: 5,
      });
      expect(got.map((i) => [i.dst, i.leaseOwner])).toEqual([
        [a!.id, "sa"],
        [a!.id, "sa"],
      ]);
    });

    test("session - opening keeps the leases the node still works on and releases the rest", async () => {
      const { store } = t;
      const { run, node, ins } = await setup(4);
      const ids = ins.map((i) => i.id);
      await store.openSession({ nodeId: node.id, sessionId: "s1" });
      await store.claimInstructions({ sessions: [{ nodeId: node.id, sessionId: "s1" }], limit: 2 });
      // Leased by another owner (an older hub) counts too: any lease of this node.
      await store.claimInstructions({ nodeIds: [node.id], limit: 1, owner: "old-hub" });
      t.clock.advance(1000);
      const { released } = await store.openSession({
        nodeId: node.id,
        sessionId: "s2",
        keep: [ids[1]!, ids[2]!, ids[3]!, newId()],
      });
      expect(released).toBe(1);
      expect(await owners(run.id, ids)).toEqual([
        ["pending", null],
        ["leased", "s2"],
        ["leased", "s2"],
        ["pending", null],
      ]);
      const [kept] = await store.getInstructions(run.id, [ids[1]!]);
      expect(kept).toMatchObject({ leaseUntil: t.clock() + LEASE, attempts: 1 });
      const again = await store.claimInstructions({
        sessions: [{ nodeId: node.id, sessionId: "s2" }],
        limit: 5,
      });
      expect(again.map((i) => i.id)).toEqual([ids[0], ids[3]]);
    });

    test("session - opening keeps an instruction the last session's end gave back, without a new delivery; never one not yet delivered", async () => {
      const { store } = t;
      const { run, node, ins } = await setup(2);
      const ids = ins.map((i) => i.id);
      await store.openSession({ nodeId: node.id, sessionId: "s1" });
      await store.claimInstructions({ sessions: [{ nodeId: node.id, sessionId: "s1" }], limit: 1 });
      // The old connection closed first (its leases given back), then the node says hello naming it.
      await store.releaseInstructions({ nodeId: node.id, owner: "s1" });
      await store.openSession({ nodeId: node.id, sessionId: "s2", keep: ids });
      expect(await owners(run.id, ids)).toEqual([
        ["leased", "s2"],
        // Never delivered (attempts 0): a node cannot be running it, so naming it leases nothing.
        ["pending", null],
      ]);
      const [kept] = await store.getInstructions(run.id, [ids[0]!]);
      expect(kept).toMatchObject({ attempts: 1 });
    });

    test("session - hellos opened together each get their own outcome; of one node's two, the later wins", async () => {
      const { store } = t;
      const run = await store.createRun();
      const [a, b, c, gone] = [
        await t.onlineNode("a"),
        await t.onlineNode("b"),
        await t.onlineNode("c"),
        await t.onlineNode("gone"),
      ];
      const [ia, ib, ic] = await store.pushInstructions(
        run.id,
        [a!, b!, c!].map((n) => ({ dst: n.id, method: "m", ttlMs: 60_000 })),
      );
      await store.claimInstructions({ nodeIds: [a!.id, b!.id, c!.id], limit: 1, owner: "old-hub" });
      await store.unregisterNode(gone!.id);
      // Started in one turn of the event loop, as a connect storm's hellos arrive: they share transactions.
      const out = await Promise.allSettled([
        store.openSession({ nodeId: a!.id, sessionId: "a1", agent: { name: "ts", version: "1" } }),
        store.openSession({ nodeId: b!.id, sessionId: "b1", keep: [ib!.id], heartbeatIntervalMs: 1000 }),
        store.openSession({ nodeId: gone!.id, sessionId: "g1" }),
        store.openSession({ nodeId: newId(), sessionId: "x1" }),
        store.openSession({ nodeId: a!.id, sessionId: "a2" }),
        store.openSession({ nodeId: c!.id, sessionId: "c1" }),
      ]);
      expect(out.map((o) => o.status)).toEqual([
        "fulfilled",
        "fulfilled",
        "rejected",
        "rejected",
        "fulfilled",
        "fulfilled",
      ]);
      const ok = (i: number) => (out[i] as PromiseFulfilledResult<{ node: unknown; released: number }>).value;
      const why = (i: number) => ((out[i] as PromiseRejectedResult).reason as { code: string }).code;
      expect(ok(0)).toMatchObject({
        released: 1,
        node: { id: a!.id, status: "online", agent: { name: "ts", version: "1" } },
      });
      expect(ok(1)).toMatchObject({
        released: 0,
        node: { heartbeatIntervalMs: 1000, onlineUntil: t.clock() + 2000 },
      });
      expect(why(2)).toBe("FLEETLINK_E_NODE_UNREGISTERED");
      expect(why(3)).toBe("FLEETLINK_E_NODE_NOT_FOUND");
      expect(ok(4).released).toBe(0);
      expect(ok(5).released).toBe(1);
      expect(await store.getSessions([a!.id, b!.id, c!.id, gone!.id])).toEqual(
        new Map([
          [a!.id, "a2"],
          [b!.id, "b1"],
          [c!.id, "c1"],
          [gone!.id, null],
        ]),
      );
      expect(await owners(run.id, [ia!.id, ib!.id, ic!.id])).toEqual([
        ["pending", null],
        ["leased", "b1"],
        ["pending", null],
      ]);
      expect((await store.getNode(gone!.id)).status).toBe("unregistered");
    });

    test("session - two replicas opening sessions of the same nodes in opposite orders: all open, none deadlocks", async () => {
      const { store } = t;
      const other = await t.replica();
      const nodes = [];
      for (let i = 0; i < 20; i++) nodes.push(await t.onlineNode(`n${i}`));
      for (let round = 0; round < 5; round++) {
        const out = await Promise.allSettled([
          ...nodes.map((n) => store.openSession({ nodeId: n.id, sessionId: `a${round}` })),
          ...[...nodes].reverse().map((n) => other.openSession({ nodeId: n.id, sessionId: `b${round}` })),
        ]);
        expect(out.filter((o) => o.status === "rejected")).toEqual([]);
        const now = await store.getSessions(nodes.map((n) => n.id));
        for (const n of nodes) expect([`a${round}`, `b${round}`]).toContain(now.get(n.id));
      }
    });

    test("session - releases arriving together each give back only their own node's and owner's leases", async () => {
      const { store } = t;
      const run = await store.createRun();
      const ns = [];
      for (const name of ["a", "b", "c", "d"]) ns.push(await t.onlineNode(name));
      const ins = await store.pushInstructions(
        run.id,
        ns.flatMap((n) => [0, 1].map(() => ({ dst: n.id, method: "m", ttlMs: 60_000 }))),
      );
      for (const [i, n] of ns.entries())
        await store.claimInstructions({ nodeIds: [n.id], limit: 2, owner: `s${i}` });
      const out = await Promise.all([
        store.releaseInstructions({ nodeId: ns[0]!.id, owner: "s0" }),
        store.releaseInstructions({ nodeId: ns[1]!.id }),
        store.releaseInstructions({ nodeId: ns[2]!.id, owner: "s2", exceptIds: [ins[5]!.id] }),
        store.releaseInstructions({ nodeId: ns[3]!.id, owner: "someone-else" }),
      ]);
      expect(out).toEqual([2, 2, 1, 0]);
      expect(
        (
          await owners(
            run.id,
            ins.map((i) => i.id),
          )
        ).map(([state]) => state),
      ).toEqual(["pending", "pending", "pending", "pending", "pending", "leased", "leased", "leased"]);
    });

    test("session - opening records a heartbeat, with the node's new interval", async () => {
      const { store } = t;
      const n = await store.registerNode({ name: "a", heartbeatIntervalMs: 60_000 });
      const { node } = await store.openSession({ nodeId: n.id, sessionId: "s1", heartbeatIntervalMs: 1000 });
      expect(node).toMatchObject({
        status: "online",
        heartbeatIntervalMs: 1000,
        onlineUntil: t.clock() + 2000,
      });
      t.clock.advance(2000);
      await store.sweep();
      expect((await store.getNode(n.id)).status).toBe("offline");
      const back = await store.openSession({ nodeId: n.id, sessionId: "s2" });
      expect(back.node).toMatchObject({
        status: "online",
        heartbeatIntervalMs: 1000,
        onlineUntil: t.clock() + 2000,
      });
    });

    test("session - opening never revives an unregistered node, and bad input is refused", async () => {
      const { store } = t;
      const n = await t.onlineNode("a");
      await store.unregisterNode(n.id);
      await rejectsWith(store.openSession({ nodeId: n.id, sessionId: "s" }), "NODE_UNREGISTERED");
      expect((await store.getNode(n.id)).status).toBe("unregistered");
      expect((await store.getSessions([n.id])).get(n.id)).toBeNull();
      await rejectsWith(store.openSession({ nodeId: newId(), sessionId: "s" }), "NODE_NOT_FOUND");
      await rejectsWith(store.openSession({ nodeId: "x", sessionId: "s" }), "INVALID_ARGUMENT", "nodeId");
      await rejectsWith(store.openSession({ nodeId: n.id, sessionId: "" }), "INVALID_ARGUMENT", "sessionId");
      await rejectsWith(
        store.openSession({ nodeId: n.id, sessionId: "s", keep: ["x"] }),
        "INVALID_ARGUMENT",
        "keep[0]",
      );
      await rejectsWith(
        store.claimInstructions({ nodeIds: [n.id], sessions: [{ nodeId: n.id, sessionId: "s" }], limit: 1 }),
        "INVALID_ARGUMENT",
        "sessions",
      );
      await rejectsWith(
        store.claimInstructions({ sessions: [{ nodeId: n.id, sessionId: "s" }], owner: "o", limit: 1 }),
        "INVALID_ARGUMENT",
        "owner",
      );
      await rejectsWith(
        store.claimInstructions({ sessions: [{ nodeId: "x", sessionId: "s" }], limit: 1 }),
        "INVALID_ARGUMENT",
        "sessions[0].nodeId",
      );
      expect(await store.claimInstructions({ sessions: [], limit: 1 })).toEqual([]);
    });

    test("session - a heartbeat of a superseded session is refused with STREAM_CLOSED and writes nothing", async () => {
      const { store } = t;
      const n = await store.registerNode({ name: "a", heartbeatIntervalMs: 1000 });
      await store.openSession({ nodeId: n.id, sessionId: "s1" });
      await store.heartbeat(n.id, undefined, "s1");
      await store.openSession({ nodeId: n.id, sessionId: "s2" });
      const before = await store.getNode(n.id);
      t.clock.advance(500);
      const err = await rejectsWith(store.heartbeat(n.id, 5000, "s1"), "STREAM_CLOSED");
      expect(err.message).toContain("session superseded");
      expect(await store.getNode(n.id)).toEqual(before);
      expect(await store.heartbeat(n.id, undefined, "s2")).toMatchObject({ onlineUntil: t.clock() + 2000 });
      // Without a session id, a heartbeat is taken as before.
      expect(await store.heartbeat(n.id)).toMatchObject({ status: "online" });
      await store.unregisterNode(n.id);
      await rejectsWith(store.heartbeat(n.id, undefined, "s2"), "NODE_UNREGISTERED");
    });

    test("session - renewals record many heartbeats at once, by their age, only for current sessions", async () => {
      const { store } = t;
      const [a, b, c, d] = await Promise.all(
        ["a", "b", "c", "d"].map((name) => store.registerNode({ name, heartbeatIntervalMs: 1000 })),
      );
      for (const n of [a!, b!, c!, d!]) await store.openSession({ nodeId: n.id, sessionId: `s-${n.name}` });
      await store.openSession({ nodeId: b!.id, sessionId: "s-b2" }); // b moved: s-b is superseded
      await store.unregisterNode(c!.id);
      const before = await store.getNode(b!.id);
      t.clock.advance(3000); // every window has run out (2 × 1000 after the open)
      await store.sweep();
      expect((await store.getNode(a!.id)).status).toBe("offline");
      const got = await store.renewSessions([
        { nodeId: a!.id, sessionId: "s-a", ageMs: 400 },
        { nodeId: b!.id, sessionId: "s-b", ageMs: 0 },
        { nodeId: c!.id, sessionId: "s-c", ageMs: 0 },
        { nodeId: d!.id, sessionId: "s-d", ageMs: 100, heartbeatIntervalMs: 5000 },
        { nodeId: newId(), sessionId: "s-x", ageMs: 0 },
      ]);
      const now = t.clock();
      expect(got).toEqual(
        new Map([
          [a!.id, now - 400 + 2000],
          [d!.id, now - 100 + 10_000],
        ]),
      );
      expect(await store.getNode(a!.id)).toMatchObject({ status: "online", onlineUntil: now + 1600 });
      expect(await store.getNode(d!.id)).toMatchObject({
        heartbeatIntervalMs: 5000,
        onlineUntil: now + 9900,
      });
      // Superseded and unregistered: nothing written.
      expect(await store.getNode(b!.id)).toEqual({ ...before, status: "offline" });
      expect((await store.getNode(c!.id)).status).toBe("unregistered");
      // A late, older heartbeat never moves a node's window back.
      expect(await store.renewSessions([{ nodeId: d!.id, sessionId: "s-d", ageMs: 5000 }])).toEqual(
        new Map([[d!.id, now + 9900]]),
      );
      expect(await store.renewSessions([])).toEqual(new Map());
      await rejectsWith(
        store.renewSessions([{ nodeId: a!.id, sessionId: "s-a", ageMs: -1 }]),
        "INVALID_ARGUMENT",
        "items[0].ageMs",
      );
      await rejectsWith(
        store.renewSessions([{ nodeId: "nope", sessionId: "s-a", ageMs: 0 }]),
        "INVALID_ARGUMENT",
        "items[0].nodeId",
      );
    });

    test("claimable - the nodes with work claimable now: pending, or a lease run out; not expired or answered", async () => {
      const { store } = t;
      const run = await store.createRun();
      const [a, b, c] = [await t.onlineNode("a"), await t.onlineNode("b"), await t.onlineNode("c")];
      expect(await store.claimableNodes()).toEqual([]);
      await store.pushInstructions(run.id, [
        { dst: a!.id, method: "m", ttlMs: 60_000 },
        { dst: b!.id, method: "m", ttlMs: 60_000 },
        { dst: b!.id, method: "m", ttlMs: 60_000 },
        { dst: c!.id, method: "m", ttlMs: 1000 },
      ]);
      expect((await store.claimableNodes()).sort()).toEqual([a!.id, b!.id, c!.id].sort());
      expect(await store.claimableNodes(1)).toHaveLength(1);
      const [got] = await store.claimInstructions({ nodeIds: [a!.id], limit: 5 });
      await store.claimInstructions({ nodeIds: [b!.id], limit: 1 });
      // b still has one pending; a's only one is leased; c's has expired.
      t.clock.advance(1000);
      expect((await store.claimableNodes()).sort()).toEqual([b!.id]);
      t.clock.advance(LEASE);
      expect((await store.claimableNodes()).sort()).toEqual([a!.id, b!.id].sort());
      await storeReply(store, { runId: run.id, nodeId: a!.id, replyTo: got!.id });
      expect((await store.claimableNodes()).sort()).toEqual([b!.id]);
      await rejectsWith(store.claimableNodes(0), "INVALID_ARGUMENT", "limit");
    });

    test("session - extending leases: only the session's own, never beyond the instruction's expiry", async () => {
      const { store } = t;
      const { run, node, ins } = await setup(3, { ttlMs: 25_000 });
      const ids = ins.map((i) => i.id);
      await store.openSession({ nodeId: node.id, sessionId: "s1" });
      await store.claimInstructions({ sessions: [{ nodeId: node.id, sessionId: "s1" }], limit: 2 });
      t.clock.advance(5000);
      const input = { nodeId: node.id, sessionId: "s1", instructionIds: ids };
      expect(await store.extendLeases(input)).toEqual([ids[0], ids[1]]);
      const [a] = await store.getInstructions(run.id, [ids[0]!]);
      expect(a!.leaseUntil).toBe(t.clock() + LEASE);
      expect(await store.extendLeases({ ...input, leaseMs: 100_000 })).toEqual([ids[0], ids[1]]);
      expect((await store.getInstructions(run.id, [ids[0]!]))[0]!.leaseUntil).toBe(a!.expiresAt);
      expect(await store.extendLeases({ ...input, sessionId: "s0" })).toEqual([]);
      await storeReply(store, { runId: run.id, nodeId: node.id, replyTo: ids[0]! });
      await store.openSession({ nodeId: node.id, sessionId: "s2", keep: [ids[1]!] });
      expect(await store.extendLeases(input)).toEqual([]);
      expect(await store.extendLeases({ ...input, sessionId: "s2" })).toEqual([ids[1]]);
      expect(await store.extendLeases({ ...input, instructionIds: [] })).toEqual([]);
      await rejectsWith(
        store.extendLeases({ ...input, instructionIds: ["x"] }),
        "INVALID_ARGUMENT",
        "instructionIds[0]",
      );
      await rejectsWith(store.extendLeases({ ...input, sessionId: "" }), "INVALID_ARGUMENT", "sessionId");
    });

    test("session - a release counts as a delivery: released after the last attempt, it ends DELIVERY_FAILED", async () => {
      const { store } = t;
      const { run, node, ins } = await setup(2, { maxAttempts: 1 });
      const s = [{ nodeId: node.id, sessionId: "s1" }];
      await store.openSession({ nodeId: node.id, sessionId: "s1" });
      expect(await store.claimInstructions({ sessions: s, limit: 1 })).toHaveLength(1);
      expect(await store.releaseInstructions({ nodeId: node.id, owner: "s1" })).toBe(1);
      // Not claimable again: it had its one delivery.
      expect((await store.claimInstructions({ sessions: s, limit: 5 })).map((i) => i.id)).toEqual([
        ins[1]!.id,
      ]);
      expect(await store.sweep()).toBe(1);
      expect(await store.claimReplies({ runId: run.id })).toMatchObject([
        { replyTo: ins[0]!.id, error: { code: "FLEETLINK_E_DELIVERY_FAILED" } },
      ]);
      // The same through a new session's opening.
      expect((await store.openSession({ nodeId: node.id, sessionId: "s2" })).released).toBe(1);
      expect(
        await store.claimInstructions({ sessions: [{ nodeId: node.id, sessionId: "s2" }], limit: 5 }),
      ).toEqual([]);
      expect(await store.sweep()).toBe(1);
      expect(await store.getReplies(run.id, [ins[1]!.id])).toMatchObject([
        { error: { code: "FLEETLINK_E_DELIVERY_FAILED" } },
      ]);
    });

    test("session - racing claims of the old session and a new session's opening leave nothing leased to the old", async () => {
      const { store } = t;
      const other = await t.replica();
      const { run, node, ins } = await setup(60);
      const ids = ins.map((i) => i.id);
      for (let round = 0; round < 5; round++) {
        const oldS = `s${round}`;
        const newS = `s${round + 1}`;
        await store.openSession({ nodeId: node.id, sessionId: oldS });
        const claims = Array.from({ length: 12 }, (_, k) =>
          (k % 2 ? other : store).claimInstructions({
            sessions: [{ nodeId: node.id, sessionId: oldS }],
            limit: 2,
          }),
        );
        const [opened] = await Promise.all([
          (async () => {
            await new Promise((r) => setTimeout(r, round));
            return other.openSession({ nodeId: node.id, sessionId: newS });
          })(),
          ...claims,
        ]);
        expect(opened).toMatchObject({ node: { id: node.id } });
        const leased = (await owners(run.id, ids)).filter(([state]) => state === "leased");
        expect(leased.filter(([, owner]) => owner !== newS)).toEqual([]);
        await store.releaseInstructions({ nodeId: node.id });
      }
    });
  });
};
