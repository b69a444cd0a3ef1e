import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { newId } from "../../src/protocol/ids.ts";
import type { NodeRecord } from "../../src/protocol/types.ts";
import { type Store, storeReply } from "../../src/store/store.ts";
import { type ManualClock, manualClock, rejectsWith } from "../helpers/expect.ts";
import { auditConformance } from "./audit.conformance.ts";
import { blobCheckConformance } from "./blob-checks.conformance.ts";
import { blobConformance } from "./blobs.conformance.ts";
import { cancelConformance } from "./cancel.conformance.ts";
import { cleanupConformance } from "./cleanup.conformance.ts";
import { enrollConformance } from "./enroll.conformance.ts";
import type { StoreFactory } from "./factory.ts";
import { leaveConformance } from "./leave.conformance.ts";
import { limitsConformance } from "./limits.conformance.ts";
import { listingConformance } from "./listing.conformance.ts";
import { outcomesConformance } from "./outcomes.conformance.ts";
import { principalConformance } from "./principals.conformance.ts";
import { replyIdConformance } from "./reply-ids.conformance.ts";
import { sessionConformance } from "./sessions.conformance.ts";
import { tenancyConformance } from "./tenancy.conformance.ts";

export type { StoreFactory } from "./factory.ts";

const LEASE = 10_000;
const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** One suite, every backend: test/conformance/{memory,sqlite,postgres}.test.ts call this. */
export const storeConformance = (name: string, factory: StoreFactory): void => {
  describe(`store conformance: ${name}`, () => {
    let store: Store;
    let clock: ManualClock;
    let cleanup: () => Promise<void>;
    let replica: () => Promise<Store>;

    beforeEach(async () => {
      clock = manualClock();
      ({ store, cleanup, replica } = await factory({
        clock,
        leaseMs: LEASE,
        maxAttempts: 3,
        maxPayloadBytes: 1024,
      }));
    });
    afterEach(async () => {
      await store.close();
      await cleanup();
    });

    const onlineNode = async (name = "n", interval = 60_000): Promise<NodeRecord> => {
      const n = await store.registerNode({ name, heartbeatIntervalMs: interval });
      return store.heartbeat(n.id);
    };
    const setup = async (nodes = 1) => {
      const run = await store.createRun();
      const ns = [];
      for (let i = 0; i < nodes; i++) ns.push(await onlineNode(`n${i}`));
      return { run, nodes: ns };
    };
    const push = (runId: string, dst: string, extra: Record<string, unknown> = {}) =>
      store.pushInstructions(runId, [{ dst, method: "m", payload: bytes("p"), ttlMs: 60_000, ...extra }]);

    describe("runs", () => {
      test("runs - move pending to running to finished with a reason", async () => {
        const run = await store.createRun();
        expect(run.status).toBe("pending");
        expect((await store.transitionRun(run.id, "pending", "running")).status).toBe("running");
        const done = await store.transitionRun(run.id, "running", "finished", "all good");
        expect(done).toMatchObject({ status: "finished", reason: "all good" });
        expect(await store.getRun(run.id)).toEqual(done);
      });

      test("runs - two racing transitions from pending: exactly one wins", async () => {
        const run = await store.createRun();
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, () => store.transitionRun(run.id, "pending", "running")),
        );
        expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
        for (const r of results.filter((r) => r.status === "rejected"))
          expect((r as PromiseRejectedResult).reason.code).toBe("FLEETLINK_E_STATUS_CONFLICT");
      });

      test("runs - a transition not in the graph is refused and changes nothing", async () => {
        const run = await store.createRun();
        await store.transitionRun(run.id, "pending", "finished");
        await rejectsWith(store.transitionRun(run.id, "finished", "running"), "INVALID_TRANSITION", "to");
        await rejectsWith(store.transitionRun(run.id, "running", "finished"), "STATUS_CONFLICT", "from");
        expect((await store.getRun(run.id)).status).toBe("finished");
      });

      test("runs - the first push starts a pending run; later pushes change nothing", async () => {
        const { run, nodes } = await setup();
        clock.advance(1000);
        await push(run.id, nodes[0]!.id);
        const started = await store.getRun(run.id);
        expect(started).toMatchObject({ status: "running", reason: null, updatedAt: run.createdAt + 1000 });
        clock.advance(1000);
        await push(run.id, nodes[0]!.id);
        expect(await store.getRun(run.id)).toEqual(started);
        await store.transitionRun(run.id, "running", "finished", "done");
        await rejectsWith(push(run.id, nodes[0]!.id), "RUN_FINISHED");
        expect(await store.getRun(run.id)).toMatchObject({ status: "finished", reason: "done" });
      });

      test("runs - a batched push starts its pending runs; a refused one leaves its run pending", async () => {
        const { nodes } = await setup();
        const [a, b] = [await store.createRun(), await store.createRun()];
        const item = { dst: nodes[0]!.id, method: "m", payload: bytes("p"), ttlMs: 60_000 };
        const results = await store.pushBatch([
          { runId: a.id, items: [item] },
          { runId: b.id, items: [{ ...item, dst: newId() }] },
          { runId: a.id, items: [item] },
        ]);
        expect(results.map((r) => r.ok)).toEqual([true, false, true]);
        expect((await store.getRun(a.id)).status).toBe("running");
        expect((await store.getRun(b.id)).status).toBe("pending");
      });

      test("runs - unknown and malformed ids", async () => {
        await rejectsWith(store.getRun(newId()), "RUN_NOT_FOUND");
        await rejectsWith(store.getRun("nope"), "INVALID_ARGUMENT", "runId");
        await rejectsWith(store.transitionRun(newId(), "pending", "running"), "RUN_NOT_FOUND");
      });
    });

    describe("nodes", () => {
      test("nodes - heartbeat sets online until last heartbeat + 2 × interval", async () => {
        const n = await store.registerNode({ name: "a", heartbeatIntervalMs: 5000, credentialHash: "h" });
        expect(n).toMatchObject({ status: "registered", onlineUntil: null, credentialHash: "h" });
        const hb = await store.heartbeat(n.id);
        expect(hb).toMatchObject({ status: "online", onlineUntil: clock() + 10_000 });
        const hb2 = await store.heartbeat(n.id, 1000);
        expect(hb2).toMatchObject({ heartbeatIntervalMs: 1000, onlineUntil: clock() + 2000 });
      });

      test("nodes - a node that misses its window is marked offline by the sweep, and a heartbeat brings it back", async () => {
        const n = await onlineNode("a", 1000);
        clock.advance(1999);
        await store.sweep();
        expect((await store.getNode(n.id)).status).toBe("online");
        clock.advance(1);
        await store.sweep();
        expect((await store.getNode(n.id)).status).toBe("offline");
        expect((await store.heartbeat(n.id)).status).toBe("online");
      });

      test("nodes - a heartbeat never revives an unregistered node", async () => {
        const n = await onlineNode();
        await store.unregisterNode(n.id);
        await rejectsWith(store.heartbeat(n.id), "NODE_UNREGISTERED");
        expect((await store.getNode(n.id)).status).toBe("unregistered");
      });

      test("nodes - racing heartbeats and an unregister end unregistered", async () => {
        const n = await onlineNode();
        await Promise.allSettled([
          store.heartbeat(n.id),
          store.unregisterNode(n.id),
          store.heartbeat(n.id),
          store.heartbeat(n.id),
        ]);
        expect((await store.getNode(n.id)).status).toBe("unregistered");
      });

      test("nodes - list, filter by status, bad input", async () => {
        const a = await onlineNode("a");
        const b = await store.registerNode({ name: "b", heartbeatIntervalMs: 1000 });
        expect((await store.listNodes()).map((n) => n.id).sort()).toEqual([a.id, b.id].sort());
        expect((await store.listNodes({ status: "registered" })).map((n) => n.id)).toEqual([b.id]);
        await rejectsWith(store.getNode(newId()), "NODE_NOT_FOUND");
        await rejectsWith(store.heartbeat(newId()), "NODE_NOT_FOUND");
        await rejectsWith(store.unregisterNode(newId()), "NODE_NOT_FOUND");
        await rejectsWith(
          store.registerNode({ name: "", heartbeatIntervalMs: 1 }),
          "INVALID_ARGUMENT",
          "name",
        );
        await rejectsWith(
          store.registerNode({ name: "x", heartbeatIntervalMs: 0 }),
          "INVALID_ARGUMENT",
          "heartbeatIntervalMs",
        );
        expect(await store.listNodes()).toHaveLength(2);
      });
    });

    describe("push", () => {
      test("push - a batch of pushes: each all or none, answered on its own, stored exactly once", async () => {
        const { run, nodes } = await setup(2);
        const done = await store.createRun();
        await store.transitionRun(done.id, "pending", "finished");
        const taken = newId();
        await push(run.id, nodes[0]!.id, { id: taken });
        const item = (dst: string, extra: Record<string, unknown> = {}) => ({
          dst,
          method: "m",
          ttlMs: 60_000,
          ...extra,
        });
        const results = await store.pushBatch([
          { runId: run.id, items: [item(nodes[0]!.id), item(nodes[1]!.id)] },
          { runId: done.id, items: [item(nodes[0]!.id)] },
          { runId: run.id, items: [item(nodes[1]!.id), item(nodes[0]!.id, { ttlMs: -1 })] },
          { runId: run.id, items: [item(nodes[1]!.id), item(nodes[0]!.id, { id: taken })] },
          { runId: run.id, items: [item(nodes[1]!.id, { method: "last" })] },
        ]);
        expect(
          results.map((r) => (r.ok ? r.instructions.length : (r.error as { code: string }).code)),
        ).toEqual([
          2,
          "FLEETLINK_E_RUN_FINISHED",
          "FLEETLINK_E_INVALID_ARGUMENT",
          "FLEETLINK_E_INVALID_ARGUMENT",
          1,
        ]);
        // The good ones once each (plus the one pushed before), nothing of the failed ones.
        const all = await store.listInstructions(run.id);
        expect(all).toHaveLength(4);
        expect(all.filter((i) => i.method === "last")).toHaveLength(1);
        expect(await store.listInstructions(done.id)).toEqual([]);
        // A batch where all succeed (one transaction on the SQL backends).
        const ok = await store.pushBatch([
          { runId: run.id, items: [item(nodes[0]!.id)] },
          { runId: run.id, items: [item(nodes[1]!.id)] },
        ]);
        expect(ok.every((r) => r.ok)).toBe(true);
        expect(await store.listInstructions(run.id)).toHaveLength(6);
        expect(await store.pushBatch([])).toEqual([]);
      });

      test("push - instructions to many nodes in one batch", async () => {
        const { run, nodes } = await setup(3);
        const out = await store.pushInstructions(
          run.id,
          nodes.map((n) => ({
            dst: n.id,
            method: "train",
            payload: bytes(n.name),
            ttlMs: 1000,
            groupId: "g1",
          })),
        );
        expect(out).toHaveLength(3);
        expect(out[0]).toMatchObject({
          runId: run.id,
          dst: nodes[0]!.id,
          method: "train",
          groupId: "g1",
          state: "pending",
          attempts: 0,
          maxAttempts: 3,
          expiresAt: clock() + 1000,
        });
        expect(text(out[0]!.payload)).toBe("n0");
      });

      test("push - bad input raises a typed error naming the field and writes nothing", async () => {
        const { run, nodes } = await setup(2);
        const gone = await onlineNode("gone");
        await store.unregisterNode(gone.id);
        const good = { dst: nodes[0]!.id, method: "m", ttlMs: 1000 };
        const cases: [() => Promise<unknown>, Parameters<typeof rejectsWith>[1], string?][] = [
          [
            () => store.pushInstructions(run.id, [good, { ...good, ttlMs: 0 }]),
            "INVALID_ARGUMENT",
            "items[1].ttlMs",
          ],
          [
            () => store.pushInstructions(run.id, [{ ...good, ttlMs: -5 }]),
            "INVALID_ARGUMENT",
            "items[0].ttlMs",
          ],
          [
            () => store.pushInstructions(run.id, [{ ...good, method: "" }]),
            "INVALID_ARGUMENT",
            "items[0].method",
          ],
          [() => store.pushInstructions(run.id, [{ ...good, dst: "x" }]), "INVALID_ARGUMENT", "items[0].dst"],
          [() => store.pushInstructions(run.id, []), "INVALID_ARGUMENT", "items"],
          [
            () => store.pushInstructions(run.id, [good, { ...good, payload: new Uint8Array(1025) }]),
            "PAYLOAD_TOO_LARGE",
            "items[1].payload",
          ],
          [
            () => store.pushInstructions(run.id, [good, { ...good, dst: newId() }]),
            "NODE_NOT_FOUND",
            "items[1].dst",
          ],
          [
            () => store.pushInstructions(run.id, [good, { ...good, dst: gone.id }]),
            "NODE_UNREGISTERED",
            "items[1].dst",
          ],
          [() => store.pushInstructions(newId(), [good]), "RUN_NOT_FOUND"],
        ];
        for (const [p, kind, field] of cases) await rejectsWith(p(), kind, field);
        expect((await store.stats()).instructions).toEqual({ pending: 0, leased: 0, done: 0 });
      });

      test("push - a duplicate caller-chosen id rolls back the whole batch", async () => {
        const { run, nodes } = await setup(1);
        const id = newId();
        await push(run.id, nodes[0]!.id, { id });
        await rejectsWith(
          store.pushInstructions(run.id, [
            { dst: nodes[0]!.id, method: "m", ttlMs: 1000 },
            { id, dst: nodes[0]!.id, method: "m", ttlMs: 1000 },
          ]),
          "INVALID_ARGUMENT",
          "items[1].id",
        );
        expect((await store.stats()).instructions.pending).toBe(1);
      });

      test("push - a finished run takes no new instructions", async () => {
        const { run, nodes } = await setup(1);
        await store.transitionRun(run.id, "pending", "finished", "cancelled");
        await rejectsWith(push(run.id, nodes[0]!.id), "RUN_FINISHED");
      });
    });

    describe("claim", () => {
      test("claim - FIFO per node, up to the limit, as a lease", async () => {
        const { run, nodes } = await setup(1);
        const dst = nodes[0]!.id;
        const pushed = [];
        for (let i = 0; i < 5; i++) pushed.push(...(await push(run.id, dst, { payload: bytes(`${i}`) })));
        const first = await store.claimInstructions({ nodeIds: [dst], limit: 2 });
        expect(first.map((i) => text(i.payload))).toEqual(["0", "1"]);
        expect(first[0]).toMatchObject({ state: "leased", attempts: 1, leaseUntil: clock() + LEASE });
        const rest = await store.claimInstructions({ nodeIds: [dst], limit: 10 });
        expect(rest.map((i) => text(i.payload))).toEqual(["2", "3", "4"]);
        expect(await store.claimInstructions({ nodeIds: [dst], limit: 10 })).toEqual([]);
      });

      test("claim - one statement for many nodes applies the limit per node", async () => {
        const { run, nodes } = await setup(3);
        for (const n of nodes)
          for (let i = 0; i < 4; i++) await push(run.id, n.id, { payload: bytes(`${n.name}-${i}`) });
        const got = await store.claimInstructions({
          nodeIds: nodes.map((n) => n.id),
          limit: 3,
          leaseMs: 500,
        });
        expect(got).toHaveLength(9);
        for (const n of nodes)
          expect(got.filter((i) => i.dst === n.id).map((i) => text(i.payload))).toEqual([
            `${n.name}-0`,
            `${n.name}-1`,
            `${n.name}-2`,
          ]);
        expect(got[0]!.leaseUntil).toBe(clock() + 500);
      });

      test("claim - concurrent claims never hand out the same instruction", async () => {
        const { run, nodes } = await setup(4);
        for (const n of nodes)
          await store.pushInstructions(
            run.id,
            Array.from({ length: 25 }, () => ({ dst: n.id, method: "m", ttlMs: 60_000 })),
          );
        const ids = nodes.map((n) => n.id);
        const batches = await Promise.all(
          Array.from({ length: 20 }, (_, k) =>
            store.claimInstructions({ nodeIds: k % 2 ? ids : [ids[k % 4]!], limit: 3 }),
          ),
        );
        let all = batches.flat().map((i) => i.id);
        while (true) {
          const more = await store.claimInstructions({ nodeIds: ids, limit: 50 });
          if (more.length === 0) break;
          all = all.concat(more.map((i) => i.id));
        }
        expect(all).toHaveLength(100);
        expect(new Set(all).size).toBe(100);
      });

      test("claim - an expired lease is redelivered with attempts + 1, at most maxAttempts times", async () => {
        const { run, nodes } = await setup(1);
        const dst = nodes[0]!.id;
        const [ins] = await push(run.id, dst, { maxAttempts: 2 });
        expect(await store.claimInstructions({ nodeIds: [dst], limit: 1 })).toHaveLength(1);
        clock.advance(LEASE - 1);
        expect(await store.claimInstructions({ nodeIds: [dst], limit: 1 })).toEqual([]);
        clock.advance(1);
        const again = await store.claimInstructions({ nodeIds: [dst], limit: 1 });
        expect(again).toMatchObject([{ id: ins!.id, attempts: 2 }]);
        clock.advance(LEASE);
        expect(await store.claimInstructions({ nodeIds: [dst], limit: 1 })).toEqual([]);
        await store.sweep();
        await store.heartbeat(dst);
        const [r] = await store.claimReplies({ runId: run.id });
        expect(r).toMatchObject({ replyTo: ins!.id, error: { code: "FLEETLINK_E_DELIVERY_FAILED" } });
      });

      test("claim - an instruction past its TTL is not delivered", async () => {
        const { run, nodes } = await setup(1);
        await push(run.id, nodes[0]!.id, { ttlMs: 100 });
        clock.advance(100);
        expect(await store.claimInstructions({ nodeIds: [nodes[0]!.id], limit: 1 })).toEqual([]);
      });

      test("claim - bad input", async () => {
        await rejectsWith(
          store.claimInstructions({ nodeIds: ["x"], limit: 1 }),
          "INVALID_ARGUMENT",
          "nodeIds[0]",
        );
        await rejectsWith(
          store.claimInstructions({ nodeIds: [newId()], limit: 0 }),
          "INVALID_ARGUMENT",
          "limit",
        );
        expect(await store.claimInstructions({ nodeIds: [], limit: 1 })).toEqual([]);
      });
    });

    describe("replies", () => {
      const claimed = async (nodes = 1) => {
        const s = await setup(nodes);
        const [ins] = await push(s.run.id, s.nodes[0]!.id);
        await store.claimInstructions({ nodeIds: [s.nodes[0]!.id], limit: 1 });
        return { ...s, ins: ins!, node: s.nodes[0]! };
      };

      test("reply - stored once, ends the lease, claimed exactly once", async () => {
        const { run, ins, node } = await claimed();
        const { reply, duplicate } = await storeReply(store, {
          runId: run.id,
          nodeId: node.id,
          replyTo: ins.id,
          payload: bytes("ok"),
        });
        expect(duplicate).toBe(false);
        expect(reply).toMatchObject({
          runId: run.id,
          src: node.id,
          dst: "coordinator",
          replyTo: ins.id,
          error: null,
        });
        clock.advance(LEASE * 2);
        expect(await store.claimInstructions({ nodeIds: [node.id], limit: 1 })).toEqual([]);
        const [got, ...none] = await store.claimReplies({ runId: run.id });
        expect(none).toEqual([]);
        expect(got).toMatchObject({ id: reply.id, replyTo: ins.id });
        expect(text(got!.payload)).toBe("ok");
        expect(await store.claimReplies({ runId: run.id })).toEqual([]);
      });

      test("reply - the same reply sent twice is stored once and both sends are acknowledged", async () => {
        const { run, ins, node } = await claimed();
        const r = { id: newId(), runId: run.id, nodeId: node.id, replyTo: ins.id, payload: bytes("ok") };
        const [a, b] = await store.storeReplies([r, r]);
        expect(a).toMatchObject({ ok: true });
        expect(b).toMatchObject({ ok: true, duplicate: true });
        const c = await storeReply(store, r);
        expect(c.duplicate).toBe(true);
        expect(c.reply.id).toBe(r.id);
        // A second run of the handler (after redelivery) is acknowledged too; the first reply stands.
        const d = await storeReply(store, { ...r, id: newId(), payload: bytes("other") });
        expect(d).toMatchObject({ duplicate: true, reply: { id: r.id } });
        expect(await store.claimReplies({ runId: run.id })).toHaveLength(1);
        expect((await store.stats()).replies).toEqual({ pending: 0, claimed: 1 });
      });

      test("reply - bad references raise typed errors and write nothing", async () => {
        const { run, ins, node, nodes } = await claimed(2);
        const other = await store.createRun();
        const base = { runId: run.id, nodeId: node.id, replyTo: ins.id };
        await rejectsWith(storeReply(store, { ...base, nodeId: nodes[1]!.id }), "NOT_ADDRESSEE");
        await rejectsWith(storeReply(store, { ...base, runId: other.id }), "RUN_MISMATCH");
        await rejectsWith(storeReply(store, { ...base, runId: newId() }), "RUN_NOT_FOUND");
        await rejectsWith(storeReply(store, { ...base, replyTo: newId() }), "INSTRUCTION_NOT_FOUND");
        await rejectsWith(
          storeReply(store, { ...base, replyTo: "zz" }),
          "INVALID_ARGUMENT",
          "items[0].replyTo",
        );
        await rejectsWith(
          storeReply(store, { ...base, payload: new Uint8Array(2000) }),
          "PAYLOAD_TOO_LARGE",
          "items[0].payload",
        );
        expect((await store.stats()).replies).toEqual({ pending: 0, claimed: 0 });
        expect((await store.stats()).instructions.leased).toBe(1);
      });

      test("reply - a reply id already used for another instruction is refused", async () => {
        const { run, nodes } = await setup(1);
        const n = nodes[0]!.id;
        const [a, b] = await store.pushInstructions(run.id, [
          { dst: n, method: "m", ttlMs: 1000 },
          { dst: n, method: "m", ttlMs: 1000 },
        ]);
        const id = newId();
        await storeReply(store, { id, runId: run.id, nodeId: n, replyTo: a!.id });
        await rejectsWith(
          storeReply(store, { id, runId: run.id, nodeId: n, replyTo: b!.id }),
          "INVALID_ARGUMENT",
          "id",
        );
        expect((await store.stats()).instructions.pending).toBe(1);
      });

      test("reply - past the TTL is refused with MESSAGE_EXPIRED, before and after the sweep", async () => {
        const { run, ins, node } = await claimed();
        clock.advance(60_000);
        const base = { runId: run.id, nodeId: node.id, replyTo: ins.id };
        await rejectsWith(storeReply(store, base), "MESSAGE_EXPIRED");
        await store.heartbeat(node.id);
        expect(await store.sweep()).toBe(1);
        await rejectsWith(storeReply(store, base), "MESSAGE_EXPIRED");
        const rs = await store.claimReplies({ runId: run.id });
        expect(rs).toMatchObject([
          { replyTo: ins.id, src: node.id, error: { code: "FLEETLINK_E_MESSAGE_EXPIRED" } },
        ]);
      });

      test("reply - a handler error is stored as an error reply", async () => {
        const { run, ins, node } = await claimed();
        await storeReply(store, {
          runId: run.id,
          nodeId: node.id,
          replyTo: ins.id,
          error: { code: "FLEETLINK_E_HANDLER_FAILED", message: "boom" },
        });
        expect(await store.claimReplies({ runId: run.id })).toMatchObject([
          { error: { code: "FLEETLINK_E_HANDLER_FAILED", message: "boom" } },
        ]);
      });

      test("reply - claim by instruction ids and limit", async () => {
        const { run, nodes } = await setup(1);
        const n = nodes[0]!.id;
        const ins = await store.pushInstructions(
          run.id,
          Array.from({ length: 4 }, () => ({ dst: n, method: "m", ttlMs: 1000 })),
        );
        await store.storeReplies(ins.map((i) => ({ runId: run.id, nodeId: n, replyTo: i.id })));
        const some = await store.claimReplies({ runId: run.id, instructionIds: [ins[2]!.id, ins[0]!.id] });
        expect(some.map((r) => r.replyTo)).toEqual([ins[0]!.id, ins[2]!.id]);
        expect(await store.claimReplies({ runId: run.id, limit: 1 })).toMatchObject([
          { replyTo: ins[1]!.id },
        ]);
        expect(await store.claimReplies({ runId: run.id })).toMatchObject([{ replyTo: ins[3]!.id }]);
        await rejectsWith(store.claimReplies({ runId: run.id, limit: 0 }), "INVALID_ARGUMENT", "limit");
      });

      test("reply - concurrent reply claims hand each reply out once", async () => {
        const { run, nodes } = await setup(1);
        const n = nodes[0]!.id;
        const ins = await store.pushInstructions(
          run.id,
          Array.from({ length: 60 }, () => ({ dst: n, method: "m", ttlMs: 1000 })),
        );
        await store.storeReplies(ins.map((i) => ({ runId: run.id, nodeId: n, replyTo: i.id })));
        const got = (
          await Promise.all(Array.from({ length: 12 }, () => store.claimReplies({ runId: run.id, limit: 7 })))
        )
          .flat()
          .map((r) => r.id);
        const rest = (await store.claimReplies({ runId: run.id })).map((r) => r.id);
        expect(got.length + rest.length).toBe(60);
        expect(new Set([...got, ...rest]).size).toBe(60);
      });
    });

    describe("outcomes", () => {
      test("outcome - a node that misses its heartbeat window turns its instructions into NODE_UNAVAILABLE", async () => {
        const run = await store.createRun();
        const n = await onlineNode("a", 1000);
        const [ins] = await push(run.id, n.id);
        await store.claimInstructions({ nodeIds: [n.id], limit: 1 });
        clock.advance(2000);
        expect(await store.sweep()).toBe(1);
        expect(await store.sweep()).toBe(0);
        expect(await store.claimReplies({ runId: run.id })).toMatchObject([
          { replyTo: ins!.id, error: { code: "FLEETLINK_E_NODE_UNAVAILABLE" } },
        ]);
        await store.heartbeat(n.id);
        // Refused for good (definite), so the node drops the late reply instead of resending it.
        const late = await rejectsWith(
          storeReply(store, { runId: run.id, nodeId: n.id, replyTo: ins!.id }),
          "INSTRUCTION_ENDED",
        );
        expect(late.definite).toBe(true);
        expect(late.message).toContain("already ended: FLEETLINK_E_NODE_UNAVAILABLE");
      });

      test("outcome - a late reply to an instruction that ended DELIVERY_FAILED is refused definitely", async () => {
        const { run, nodes } = await setup(1);
        const n = nodes[0]!.id;
        const [ins] = await push(run.id, n, { maxAttempts: 1 });
        await store.claimInstructions({ nodeIds: [n], limit: 1 });
        clock.advance(LEASE);
        await store.heartbeat(n);
        expect(await store.sweep()).toBe(1);
        const late = await rejectsWith(
          storeReply(store, { runId: run.id, nodeId: n, replyTo: ins!.id }),
          "INSTRUCTION_ENDED",
        );
        expect(late.definite).toBe(true);
        expect(late.message).toContain("already ended: FLEETLINK_E_DELIVERY_FAILED");
        const [r] = await store.storeReplies([{ runId: run.id, nodeId: n, replyTo: ins!.id }]);
        expect(r).toMatchObject({ ok: false, error: { definite: true } });
      });

      test("outcome - unregistering a node ends its instructions with NODE_UNAVAILABLE, even held ones", async () => {
        const { run, nodes } = await setup(1);
        await push(run.id, nodes[0]!.id);
        await push(run.id, nodes[0]!.id, { holdWhileOffline: true });
        await store.unregisterNode(nodes[0]!.id);
        expect(await store.sweep()).toBe(2);
        const rs = await store.claimReplies({ runId: run.id });
        expect(rs.map((r) => r.error?.code)).toEqual([
          "FLEETLINK_E_NODE_UNAVAILABLE",
          "FLEETLINK_E_NODE_UNAVAILABLE",
        ]);
      });

      test("outcome - a held instruction waits for an offline node and is delivered when it returns", async () => {
        const run = await store.createRun();
        const n = await onlineNode("a", 1000);
        clock.advance(5000);
        const [held] = await push(run.id, n.id, { holdWhileOffline: true, ttlMs: 60_000 });
        const [plain] = await push(run.id, n.id);
        await store.sweep();
        expect(await store.claimReplies({ runId: run.id })).toMatchObject([
          { replyTo: plain!.id, error: { code: "FLEETLINK_E_NODE_UNAVAILABLE" } },
        ]);
        clock.advance(10_000);
        await store.heartbeat(n.id);
        const [got] = await store.claimInstructions({ nodeIds: [n.id], limit: 5 });
        expect(got!.id).toBe(held!.id);
        await storeReply(store, { runId: run.id, nodeId: n.id, replyTo: held!.id });
        expect(await store.claimReplies({ runId: run.id })).toMatchObject([
          { replyTo: held!.id, error: null },
        ]);
      });

      test("outcome - a held instruction whose node never returns ends MESSAGE_EXPIRED", async () => {
        const run = await store.createRun();
        const n = await onlineNode("a", 1000);
        const [held] = await push(run.id, n.id, { holdWhileOffline: true, ttlMs: 30_000 });
        clock.advance(30_000);
        expect(await store.sweep()).toBe(1);
        expect(await store.claimReplies({ runId: run.id })).toMatchObject([
          { replyTo: held!.id, error: { code: "FLEETLINK_E_MESSAGE_EXPIRED" } },
        ]);
      });

      test("outcome - a reply stored before its node went offline is still delivered", async () => {
        const run = await store.createRun();
        const n = await onlineNode("a", 1000);
        const [ins] = await push(run.id, n.id);
        await storeReply(store, { runId: run.id, nodeId: n.id, replyTo: ins!.id, payload: bytes("r") });
        clock.advance(10_000);
        await store.unregisterNode(n.id);
        expect(await store.sweep()).toBe(0);
        const rs = await store.claimReplies({ runId: run.id });
        expect(rs).toHaveLength(1);
        expect(rs[0]!.error).toBeNull();
        expect(text(rs[0]!.payload)).toBe("r");
      });

      test("outcome - every instruction ends in exactly one reply or error reply", async () => {
        const run = await store.createRun();
        const a = await onlineNode("a", 1000);
        const b = await onlineNode("b", 100_000);
        const ins = await store.pushInstructions(run.id, [
          ...Array.from({ length: 10 }, () => ({ dst: a.id, method: "m", ttlMs: 5000 })),
          ...Array.from({ length: 10 }, () => ({ dst: b.id, method: "m", ttlMs: 5000, maxAttempts: 1 })),
        ]);
        const got = await store.claimInstructions({ nodeIds: [a.id, b.id], limit: 5, leaseMs: 1000 });
        await store.storeReplies(
          got.slice(0, 3).map((i) => ({ runId: run.id, nodeId: i.dst, replyTo: i.id })),
        );
        clock.advance(1500);
        await Promise.all([store.sweep(), store.sweep(), store.sweep()]);
        clock.advance(5000);
        await Promise.all([store.sweep(), store.sweep()]);
        const rs = await store.claimReplies({ runId: run.id });
        expect(rs).toHaveLength(20);
        expect(new Set(rs.map((r) => r.replyTo))).toEqual(new Set(ins.map((i) => i.id)));
        const codes = rs.map((r) => r.error?.code ?? "ok").sort();
        expect(codes.filter((c) => c === "ok")).toHaveLength(3);
        expect(codes).toContain("FLEETLINK_E_NODE_UNAVAILABLE");
        expect(codes).toContain("FLEETLINK_E_DELIVERY_FAILED");
        expect(codes).toContain("FLEETLINK_E_MESSAGE_EXPIRED");
      });
    });

    describe("streams", () => {
      test("release - a stale owner cannot release the leases its replacement holds", async () => {
        const { run, nodes } = await setup(1);
        const n = nodes[0]!.id;
        await store.pushInstructions(run.id, [
          { dst: n, method: "m", ttlMs: 60_000 },
          { dst: n, method: "m", ttlMs: 60_000 },
          { dst: n, method: "m", ttlMs: 60_000 },
        ]);
        const [a] = await store.claimInstructions({ nodeIds: [n], limit: 1, owner: "stream-1" });
        // The node reconnects: the new stream releases everything the node is not working on, then claims.
        expect(await store.releaseInstructions({ nodeId: n })).toBe(1);
        const got = await store.claimInstructions({ nodeIds: [n], limit: 5, owner: "stream-2" });
        expect(got.map((i) => i.leaseOwner)).toEqual(["stream-2", "stream-2", "stream-2"]);
        expect(got.find((i) => i.id === a!.id)?.attempts).toBe(2);
        // The old stream's late cleanup finds nothing of its own to release.
        expect(await store.releaseInstructions({ nodeId: n, owner: "stream-1" })).toBe(0);
        expect(await store.claimInstructions({ nodeIds: [n], limit: 5 })).toEqual([]);
        expect(
          await store.releaseInstructions({ nodeId: n, owner: "stream-2", exceptIds: [got[0]!.id] }),
        ).toBe(2);
        expect((await store.claimInstructions({ nodeIds: [n], limit: 5 })).map((i) => i.id)).toEqual([
          got[1]!.id,
          got[2]!.id,
        ]);
        await rejectsWith(store.releaseInstructions({ nodeId: "x" }), "INVALID_ARGUMENT", "nodeId");
      });

      test("withdraw - every not-ended instruction is withdrawn, delivered or not, with a claimed CANCELLED reply", async () => {
        const { run, nodes } = await setup(1);
        const n = nodes[0]!.id;
        const [a, b] = await store.pushInstructions(run.id, [
          { dst: n, method: "m", ttlMs: 60_000 },
          { dst: n, method: "m", ttlMs: 60_000 },
        ]);
        await store.claimInstructions({ nodeIds: [n], limit: 1 });
        expect((await store.withdrawInstructions(run.id, [a!.id, b!.id])).sort()).toEqual(
          [a!.id, b!.id].sort(),
        );
        expect(await store.withdrawInstructions(run.id, [b!.id])).toEqual([]);
        expect(await store.claimInstructions({ nodeIds: [n], limit: 5 })).toEqual([]);
        expect(await store.claimReplies({ runId: run.id })).toEqual([]);
        expect(await store.getReplies(run.id, [a!.id, b!.id])).toMatchObject([
          { error: { code: "FLEETLINK_E_CANCELLED" } },
          { error: { code: "FLEETLINK_E_CANCELLED" } },
        ]);
        await rejectsWith(storeReply(store, { runId: run.id, nodeId: n, replyTo: b!.id }), "CANCELLED");
        // The delivered one's node answers late: refused, the withdrawal stands.
        await rejectsWith(storeReply(store, { runId: run.id, nodeId: n, replyTo: a!.id }), "CANCELLED");
      });

      test("withdraw - with deliver the CANCELLED replies are left for the run's coordinator, claimed once", async () => {
        const { run, nodes } = await setup(1);
        const n = nodes[0]!.id;
        const [a, b] = await store.pushInstructions(run.id, [
          { dst: n, method: "m", ttlMs: 60_000 },
          { dst: n, method: "m", ttlMs: 60_000 },
        ]);
        await store.claimInstructions({ nodeIds: [n], limit: 1 });
        expect((await store.withdrawInstructions(run.id, [a!.id, b!.id], { deliver: true })).sort()).toEqual(
          [a!.id, b!.id].sort(),
        );
        const claimed = await store.claimReplies({ runId: run.id });
        expect(claimed.map((r) => r.replyTo).sort()).toEqual([a!.id, b!.id].sort());
        expect(claimed.every((r) => r.error?.code === "FLEETLINK_E_CANCELLED")).toBe(true);
        // Each says whether its node had it: the delivered one was being worked on, the other never left.
        const byId = new Map(claimed.map((r) => [r.replyTo, r.error?.message]));
        expect(byId.get(a!.id)).toMatch(/withdrawn while the node worked on it/);
        expect(byId.get(b!.id)).toBe("withdrawn before delivery");
        expect(await store.claimReplies({ runId: run.id })).toEqual([]);
        await rejectsWith(storeReply(store, { runId: run.id, nodeId: n, replyTo: a!.id }), "CANCELLED");
      });

      test("getReplies - reads replies whether or not they were claimed", async () => {
        const { run, nodes } = await setup(1);
        const n = nodes[0]!.id;
        const [a, b] = await store.pushInstructions(run.id, [
          { dst: n, method: "m", ttlMs: 60_000 },
          { dst: n, method: "m", ttlMs: 60_000 },
        ]);
        await storeReply(store, { runId: run.id, nodeId: n, replyTo: a!.id });
        await store.claimReplies({ runId: run.id });
        await storeReply(store, { runId: run.id, nodeId: n, replyTo: b!.id });
        expect((await store.getReplies(run.id, [b!.id, a!.id, newId()])).map((r) => r.replyTo)).toEqual([
          a!.id,
          b!.id,
        ]);
        expect(await store.getReplies((await store.createRun()).id, [a!.id])).toEqual([]);
        const ins = await store.getInstructions(run.id, [b!.id, a!.id, newId()]);
        expect(ins.map((i) => [i.id, i.state])).toEqual([
          [a!.id, "done"],
          [b!.id, "done"],
        ]);
      });

      /** Lets a LISTEN connection open, then `reset()`, has `other` push one instruction, waits ≤ 2 s for `heard()`. */
      const pushAndWait = async (other: Store, dst: string, reset: () => void, heard: () => boolean) => {
        const run = await store.createRun();
        await new Promise((r) => setTimeout(r, 100));
        reset();
        await other.pushInstructions(run.id, [{ dst, method: "m", ttlMs: 60_000 }]);
        const deadline = Date.now() + 2000;
        while (!heard() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      };

      test("watch - a change committed by another replica wakes the watcher", async () => {
        const other = await replica();
        try {
          const { nodes } = await setup(1);
          let woke = 0;
          const stop = store.watch(() => woke++);
          await pushAndWait(
            other,
            nodes[0]!.id,
            () => (woke = 0),
            () => woke > 0,
          );
          stop();
          expect(woke).toBeGreaterThan(0);
        } finally {
          if (other !== store) await other.close();
        }
      });

      test("watch - several watchers share the store's remote subscription; one leaving keeps the others hearing", async () => {
        const other = await replica();
        try {
          const { nodes } = await setup(1);
          const woke = [0, 0, 0];
          const stops = woke.map((_, k) => store.watch(() => woke[k]!++));
          const leave = () => {
            stops[0]!();
            stops[0]!(); // twice is harmless
            woke.fill(0);
          };
          await pushAndWait(other, nodes[0]!.id, leave, () => woke[1]! > 0 && woke[2]! > 0);
          expect(woke[0]).toBe(0);
          expect(woke[1]).toBeGreaterThan(0);
          expect(woke[2]).toBeGreaterThan(0);
          stops[1]!();
          stops[2]!();
          // A new watcher after the last left subscribes again.
          let again = 0;
          const stop = store.watch(() => again++);
          await pushAndWait(
            other,
            nodes[0]!.id,
            () => (again = 0),
            () => again > 0,
          );
          stop();
          expect(again).toBeGreaterThan(0);
        } finally {
          if (other !== store) await other.close();
        }
      });
    });

    describe("records", () => {
      test("records - compare-and-set: of racing writers from one version exactly one wins", async () => {
        expect(await store.getRecord("k")).toBeNull();
        const first = await store.putRecord("k", { status: "in_progress", n: 1 }, null);
        expect(first).toMatchObject({ key: "k", version: 1, value: { status: "in_progress", n: 1 } });
        await rejectsWith(store.putRecord("k", { n: 2 }, null), "STATUS_CONFLICT", "expectedVersion");
        const results = await Promise.allSettled(
          Array.from({ length: 6 }, (_, i) => store.putRecord("k", { n: 10 + i }, 1)),
        );
        expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
        const now = await store.getRecord<{ n: number }>("k");
        expect(now!.version).toBe(2);
        expect(now!.value.n).toBeGreaterThanOrEqual(10);
        await rejectsWith(store.getRecord(""), "INVALID_ARGUMENT", "key");
        await store.putRecord("roles:b", 2, null);
        await store.putRecord("roles:a", 1, null);
        await store.putRecord("rolesX", 3, null);
        expect((await store.listRecords("roles:")).map((r) => [r.key, r.value])).toEqual([
          ["roles:a", 1],
          ["roles:b", 2],
        ]);
      });
    });

    describe("housekeeping", () => {
      test("cleanup - removes ended, claimed messages and empty finished runs older than the cutoff", async () => {
        const { run, nodes } = await setup(1);
        const n = nodes[0]!.id;
        const [a, b] = await store.pushInstructions(run.id, [
          { dst: n, method: "m", ttlMs: 60_000 },
          { dst: n, method: "m", ttlMs: 60_000 },
        ]);
        await storeReply(store, { runId: run.id, nodeId: n, replyTo: a!.id });
        await store.claimReplies({ runId: run.id });
        clock.advance(1000);
        // A reply newer than the cutoff: the run is active, not abandoned (see cleanup.conformance.ts).
        await storeReply(store, { runId: run.id, nodeId: n, replyTo: b!.id });
        const none = {
          instructions: 0,
          replies: 0,
          runs: 0,
          abandonedRuns: 0,
          nodes: 0,
          enrollTokens: 0,
          principals: 0,
        };
        expect(await store.cleanup(5000)).toEqual(none);
        expect(await store.cleanup(500)).toEqual({ ...none, instructions: 1, replies: 1 });
        await store.claimReplies({ runId: run.id });
        await store.transitionRun(run.id, "running", "finished");
        clock.advance(1000);
        expect(await store.cleanup(500)).toEqual({ ...none, instructions: 1, replies: 1, runs: 1 });
        await rejectsWith(store.getRun(run.id), "RUN_NOT_FOUND");
      });

      test("now - the store's time is the injected clock's", async () => {
        expect(await store.now()).toBe(clock());
        clock.advance(1234);
        expect(await store.now()).toBe(clock());
        expect((await store.createRun()).createdAt).toBe(clock());
      });

      test("stats - counts runs, nodes, instructions and replies", async () => {
        await store.createRun(); // pending: nothing pushed
        const { run, nodes } = await setup(2);
        await store.registerNode({ name: "idle", heartbeatIntervalMs: 1000 });
        await push(run.id, nodes[0]!.id);
        const [x] = await push(run.id, nodes[1]!.id);
        await store.claimInstructions({ nodeIds: [nodes[1]!.id], limit: 1 });
        await storeReply(store, { runId: run.id, nodeId: nodes[1]!.id, replyTo: x!.id });
        expect(await store.stats()).toEqual({
          runs: { pending: 1, running: 1, finished: 0 },
          nodes: { registered: 1, online: 2, offline: 0, unregistered: 0 },
          instructions: { pending: 1, leased: 0, done: 1 },
          replies: { pending: 1, claimed: 0 },
        });
      });

      test("stats - a node whose online window ran out counts as offline, before any sweep (a stopped fleet)", async () => {
        const n = await store.registerNode({ name: "gone", heartbeatIntervalMs: 1000 });
        await store.heartbeat(n.id); // online until now + 2 intervals
        await store.heartbeat((await store.registerNode({ name: "live", heartbeatIntervalMs: 60_000 })).id);
        expect((await store.stats()).nodes).toMatchObject({ online: 2, offline: 0 });
        clock.advance(2000); // the window ends: online_until <= now
        expect((await store.stats()).nodes).toMatchObject({ online: 1, offline: 1 });
        expect((await store.listNodes()).find((x) => x.id === n.id)?.status).toBe("online"); // not swept
      });
    });
  });
  // Each of these opens its own store per test (so they do not also run the setup above).
  describe(`store conformance: ${name}`, () => {
    replyIdConformance(factory);
    limitsConformance(factory);
    enrollConformance(factory);
    sessionConformance(factory);
    leaveConformance(factory);
    cleanupConformance(factory);
    listingConformance(factory);
    cancelConformance(factory);
    blobConformance(factory);
    blobCheckConformance(factory);
    tenancyConformance(factory);
    principalConformance(factory);
    auditConformance(factory);
    outcomesConformance(factory);
  });
};
