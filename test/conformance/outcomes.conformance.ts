import { describe, expect, test } from "vitest";
import { newId } from "../../src/protocol/ids.ts";
import { storeReply } from "../../src/store/store.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { bytes, LEASE, type StoreFactory, useStore } from "./factory.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** The dashboard's reads: a call with its replies, a node's history, and the counters behind the rate charts. */
export const outcomesConformance = (factory: StoreFactory): void => {
  describe("dashboard reads", () => {
    const t = useStore(factory);

    test("callInstructions - one call's instructions with replies, errors and payloads cut to the preview", async () => {
      const { store, clock } = t;
      const a = await t.onlineNode("a");
      const b = await t.onlineNode("b");
      const run = await store.createRun();
      const group = newId();
      const big = "x".repeat(900);
      const [ia, ib] = await store.pushInstructions(run.id, [
        { dst: a.id, method: "add", payload: bytes(JSON.stringify({ big })), ttlMs: 60_000, groupId: group },
        { dst: b.id, method: "add", payload: bytes("{}"), ttlMs: 60_000, groupId: group },
      ]);
      // Another call of the same run is not part of it.
      await store.pushInstructions(run.id, [{ dst: a.id, method: "other", ttlMs: 60_000 }]);
      await store.claimInstructions({ nodeIds: [a.id, b.id], limit: 1 });
      clock.advance(250);
      await storeReply(store, { runId: run.id, nodeId: a.id, replyTo: ia!.id, payload: bytes("5") });
      clock.advance(250);
      await storeReply(store, {
        runId: run.id,
        nodeId: b.id,
        replyTo: ib!.id,
        error: { code: "HANDLER_FAILED", message: "boom: b is broken" },
      });

      const call = await store.callInstructions(run.id, group, { previewBytes: 16 });
      expect(call.map((i) => [i.dst, i.method, i.attempts])).toEqual([
        [a.id, "add", 1],
        [b.id, "add", 1],
      ]);
      const [x, y] = call;
      expect(x!.payloadBytes).toBe(JSON.stringify({ big }).length);
      expect(text(x!.payload)).toBe(JSON.stringify({ big }).slice(0, 16));
      expect(x!.reply).toMatchObject({ error: null, payloadBytes: 1 });
      expect(text(x!.reply!.payload)).toBe("5");
      expect(x!.reply!.createdAt - x!.createdAt).toBe(250);
      expect(y!.reply!.error).toEqual({ code: "HANDLER_FAILED", message: "boom: b is broken" });
      expect(y!.reply!.createdAt - y!.createdAt).toBe(500);

      // Without a groupId the call is the instruction itself; an unknown call is empty; an unknown run is not found.
      const [single] = await store.pushInstructions(run.id, [{ dst: a.id, method: "solo", ttlMs: 60_000 }]);
      const solo = await store.callInstructions(run.id, single!.id);
      expect(solo.map((i) => [i.id, i.state, i.reply])).toEqual([[single!.id, "pending", null]]);
      expect(await store.callInstructions(run.id, newId())).toEqual([]);
      await rejectsWith(store.callInstructions(newId(), group), "RUN_NOT_FOUND");
      await rejectsWith(
        store.callInstructions(run.id, group, { previewBytes: 1e6 }),
        "INVALID_ARGUMENT",
        "previewBytes",
      );
    });

    test("nodeInstructions - a node's newest instructions across runs, filtered by method, run and outcome", async () => {
      const { store, clock } = t;
      const a = await t.onlineNode("a");
      const b = await t.onlineNode("b");
      const r1 = await store.createRun();
      const r2 = await store.createRun();
      const push = async (run: string, dst: string, method: string) => {
        clock.advance(1);
        return (
          await store.pushInstructions(run, [{ dst, method, payload: bytes("[1,2]"), ttlMs: 60_000 }])
        )[0]!;
      };
      const ok = await push(r1.id, a.id, "add");
      const failed = await push(r2.id, a.id, "div");
      const open = await push(r2.id, a.id, "add");
      await push(r1.id, b.id, "add");
      await store.claimInstructions({ nodeIds: [a.id], limit: 10 });
      await storeReply(store, { runId: r1.id, nodeId: a.id, replyTo: ok.id, payload: bytes("3") });
      await storeReply(store, {
        runId: r2.id,
        nodeId: a.id,
        replyTo: failed.id,
        error: { code: "DIV_ZERO", message: "division by zero" },
      });

      const ids = async (o: Parameters<typeof store.nodeInstructions>[1] = {}) =>
        (await store.nodeInstructions(a.id, o)).map((i) => i.id);
      expect(await ids()).toEqual([open.id, failed.id, ok.id]);
      expect(await ids({ limit: 2 })).toEqual([open.id, failed.id]);
      expect(await ids({ method: "add" })).toEqual([open.id, ok.id]);
      expect(await ids({ runId: r2.id })).toEqual([open.id, failed.id]);
      expect(await ids({ outcome: "ok" })).toEqual([ok.id]);
      expect(await ids({ outcome: "error" })).toEqual([failed.id]);
      expect(await ids({ outcome: "pending" })).toEqual([open.id]);
      expect(await ids({ outcome: "pending", method: "div" })).toEqual([]);
      const [latest, withError] = await store.nodeInstructions(a.id);
      // Sizes only: no payload bytes for a list.
      expect(latest).toMatchObject({ state: "leased", attempts: 1, payloadBytes: 5, reply: null });
      expect(latest!.payload.byteLength).toBe(0);
      expect(withError!.reply!.error).toEqual({ code: "DIV_ZERO", message: "division by zero" });
      expect(await store.nodeInstructions(newId())).toEqual([]);
      await rejectsWith(
        store.nodeInstructions(a.id, { outcome: "maybe" as never }),
        "INVALID_ARGUMENT",
        "outcome",
      );
    });

    test("deliveredAt - the first delivery's time: a claim sets it, a redelivery keeps it, a push leased at once has it", async () => {
      const { store, clock } = t;
      const a = await t.onlineNode("a");
      const run = await store.createRun();
      const [i] = await store.pushInstructions(run.id, [{ dst: a.id, method: "m", ttlMs: 600_000 }]);
      const view = async (id: string) => (await store.nodeInstructions(a.id)).find((x) => x.id === id)!;
      expect((await view(i!.id)).deliveredAt).toBeNull();
      clock.advance(100);
      const first = clock();
      await store.claimInstructions({ nodeIds: [a.id], limit: 1 });
      expect(await view(i!.id)).toMatchObject({ deliveredAt: first, attempts: 1 });
      // The lease runs out; the second delivery counts an attempt and keeps the first time.
      clock.advance(LEASE + 1);
      await store.claimInstructions({ nodeIds: [a.id], limit: 1 });
      expect(await view(i!.id)).toMatchObject({ deliveredAt: first, attempts: 2 });
      await storeReply(store, { runId: run.id, nodeId: a.id, replyTo: i!.id });
      expect((await view(i!.id)).deliveredAt).toBe(first);

      const sessionId = newId();
      await store.openSession({ nodeId: a.id, sessionId });
      clock.advance(50);
      const [j] = await store.pushInstructions(run.id, [
        { dst: a.id, method: "m", ttlMs: 600_000, leaseTo: sessionId },
      ]);
      // Both SQL stores honour leaseTo for the node's current session.
      expect(j!.state).toBe("leased");
      expect((await view(j!.id)).deliveredAt).toBe(j!.createdAt);
    });

    test("recentFailures - the newest error replies, newest first, of every tenant or one, bounded by a limit", async () => {
      const { store, clock } = t;
      const a = await t.onlineNode("a");
      const b = await store.heartbeat(
        (await store.registerNode({ name: "b", heartbeatIntervalMs: 60_000, tenant: "team-b" })).id,
      );
      const mine = await store.createRun();
      const theirs = await store.createRun({ tenant: "team-b" });
      const group = newId();
      const [ok, failed, solo] = await store.pushInstructions(mine.id, [
        { dst: a.id, method: "add", ttlMs: 60_000, groupId: group },
        { dst: a.id, method: "div", ttlMs: 60_000, groupId: group },
        { dst: a.id, method: "solo", ttlMs: 60_000 },
      ]);
      const [other] = await store.pushInstructions(theirs.id, [{ dst: b.id, method: "x", ttlMs: 60_000 }]);
      await store.claimInstructions({ nodeIds: [a.id, b.id], limit: 10 });
      await storeReply(store, { runId: mine.id, nodeId: a.id, replyTo: ok!.id, payload: bytes("1") });
      clock.advance(10);
      await storeReply(store, {
        runId: mine.id,
        nodeId: a.id,
        replyTo: failed!.id,
        error: { code: "DIV_ZERO", message: "division by zero" },
      });
      clock.advance(10);
      await storeReply(store, {
        runId: theirs.id,
        nodeId: b.id,
        replyTo: other!.id,
        error: { code: "HANDLER_FAILED", message: "theirs" },
      });
      // A withdrawal's CANCELLED is a failure too; an ok reply is not.
      clock.advance(10);
      await store.withdrawInstructions(mine.id, [solo!.id]);

      const all = await store.recentFailures();
      expect(all.map((f) => [f.instructionId, f.code])).toEqual([
        [solo!.id, "FLEETLINK_E_CANCELLED"],
        [other!.id, "HANDLER_FAILED"],
        [failed!.id, "DIV_ZERO"],
      ]);
      expect(all[2]).toMatchObject({
        runId: mine.id,
        nodeId: a.id,
        callId: group,
        method: "div",
        message: "division by zero",
        at: clock() - 20,
      });
      // Without a groupId the call is the instruction itself.
      expect(all[0]!.callId).toBe(solo!.id);
      expect(all[0]!.seq).toBeGreaterThan(all[1]!.seq);
      expect((await store.recentFailures({ limit: 1 })).map((f) => f.instructionId)).toEqual([solo!.id]);
      expect((await store.recentFailures({ tenant: "team-b" })).map((f) => f.instructionId)).toEqual([
        other!.id,
      ]);
      expect((await store.recentFailures({ tenant: "default" })).map((f) => f.instructionId)).toEqual([
        solo!.id,
        failed!.id,
      ]);
      expect(await store.recentFailures({ tenant: "team-c" })).toEqual([]);
      await rejectsWith(store.recentFailures({ limit: 101 }), "INVALID_ARGUMENT", "limit");
      await rejectsWith(store.recentFailures({ limit: 0 }), "INVALID_ARGUMENT", "limit");
    });

    test("activityCounters - pushes and replies only grow, errors are counted after a given reply", async () => {
      const { store } = t;
      const a = await t.onlineNode("a");
      const run = await store.createRun();
      const before = await store.activityCounters(null);
      expect(before.errors).toBe(0);
      const ins = await store.pushInstructions(
        run.id,
        [0, 1, 2].map(() => ({ dst: a.id, method: "m", ttlMs: 60_000 })),
      );
      await store.claimInstructions({ nodeIds: [a.id], limit: 10 });
      await storeReply(store, { runId: run.id, nodeId: a.id, replyTo: ins[0]!.id });
      await storeReply(store, {
        runId: run.id,
        nodeId: a.id,
        replyTo: ins[1]!.id,
        error: { code: "E", message: "no" },
      });
      await store.withdrawInstructions(run.id, [ins[2]!.id]);
      // Another replica's handle reads the same counters.
      const other = await t.replica();
      const after = await other.activityCounters(before.replies);
      expect(after.instructions - before.instructions).toBe(3);
      expect(after.replies - before.replies).toBe(3);
      // The handler's error and the withdrawal's CANCELLED.
      expect(after.errors).toBe(2);
      expect((await store.activityCounters(after.replies)).errors).toBe(0);
    });
  });
};
