import { describe, expect, test } from "vitest";
import { storeReply } from "../../src/store/store.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { LEASE, type StoreFactory, useStore } from "./factory.ts";

/** Withdrawing delivered instructions, and the cancellation log that tells their nodes to stop. */
export const cancelConformance = (factory: StoreFactory): void => {
  describe("cancellation", () => {
    const t = useStore(factory);

    const pushTwo = async (opts: { ttlMs?: number; maxAttempts?: number } = {}) => {
      const run = await t.store.createRun();
      const node = await t.onlineNode("c");
      const ins = await t.store.pushInstructions(
        run.id,
        [1, 2].map(() => ({ dst: node.id, method: "m", ttlMs: opts.ttlMs ?? 60_000, ...opts })),
      );
      return { run, node, ins };
    };

    test("cancel log - starts empty; null reads the current end", async () => {
      expect(await t.store.cancellationsSince(null)).toEqual({ seq: 0, items: [] });
      expect(await t.store.cancellationsSince(0)).toEqual({ seq: 0, items: [] });
      await rejectsWith(t.store.cancellationsSince(-1), "INVALID_ARGUMENT", "afterSeq");
      await rejectsWith(t.store.cancellationsSince(0, 0), "INVALID_ARGUMENT", "limit");
    });

    test("withdraw - a delivered instruction is withdrawn too, logged for its node; a pending one is not logged", async () => {
      const { store } = t;
      const { run, node, ins } = await pushTwo();
      const [a, b] = ins;
      await store.claimInstructions({ nodeIds: [node.id], limit: 1 });
      const start = await store.cancellationsSince(null);
      expect((await store.withdrawInstructions(run.id, [a!.id, b!.id])).sort()).toEqual(
        [a!.id, b!.id].sort(),
      );
      expect(await store.withdrawInstructions(run.id, [a!.id, b!.id])).toEqual([]);
      const log = await store.cancellationsSince(start.seq);
      expect(log.items).toEqual([
        { seq: log.seq, instructionId: a!.id, nodeId: node.id, code: "FLEETLINK_E_CANCELLED" },
      ]);
      expect(await store.cancellationsSince(log.seq)).toEqual({ seq: log.seq, items: [] });
      // Both end with a claimed CANCELLED reply; the node's late reply is refused, never a second reply.
      expect((await store.getReplies(run.id, [a!.id, b!.id])).map((r) => r.error?.code)).toEqual([
        "FLEETLINK_E_CANCELLED",
        "FLEETLINK_E_CANCELLED",
      ]);
      expect(await store.claimReplies({ runId: run.id })).toEqual([]);
      await rejectsWith(storeReply(store, { runId: run.id, nodeId: node.id, replyTo: a!.id }), "CANCELLED");
      expect(await store.getReplies(run.id, [a!.id])).toHaveLength(1);
    });

    test("withdraw - a reply stored first wins: the instruction is not withdrawn nor logged", async () => {
      const { store } = t;
      const { run, node, ins } = await pushTwo();
      await store.claimInstructions({ nodeIds: [node.id], limit: 2 });
      await storeReply(store, { runId: run.id, nodeId: node.id, replyTo: ins[0]!.id });
      expect(await store.withdrawInstructions(run.id, [ins[0]!.id])).toEqual([]);
      expect((await store.cancellationsSince(0)).items).toEqual([]);
      expect((await store.getReplies(run.id, [ins[0]!.id]))[0]!.error).toBeNull();
    });

    test("withdraw - racing replies from another replica: exactly one outcome per instruction", async () => {
      const { store } = t;
      const other = await t.replica();
      const run = await store.createRun();
      const node = await t.onlineNode("r");
      const ins = await store.pushInstructions(
        run.id,
        Array.from({ length: 20 }, () => ({ dst: node.id, method: "m", ttlMs: 60_000 })),
      );
      await store.claimInstructions({ nodeIds: [node.id], limit: 20 });
      const [withdrawn, replied] = await Promise.all([
        store.withdrawInstructions(
          run.id,
          ins.map((i) => i.id),
        ),
        other.storeReplies(ins.map((i) => ({ runId: run.id, nodeId: node.id, replyTo: i.id }))),
      ]);
      const ok = replied.filter((r) => r.ok).length;
      expect(withdrawn.length + ok).toBe(20);
      const replies = await store.getReplies(
        run.id,
        ins.map((i) => i.id),
      );
      expect(replies).toHaveLength(20);
      const cancelled = replies
        .filter((r) => r.error?.code === "FLEETLINK_E_CANCELLED")
        .map((r) => r.replyTo);
      expect(cancelled.sort()).toEqual([...withdrawn].sort());
      expect((await store.cancellationsSince(0)).items.map((c) => c.instructionId).sort()).toEqual(
        [...withdrawn].sort(),
      );
    });

    test("sweep - a held instruction past its TTL is logged MESSAGE_EXPIRED; a pending one is not", async () => {
      const { store, clock } = t;
      const { node, ins } = await pushTwo({ ttlMs: 1000 });
      await store.claimInstructions({ nodeIds: [node.id], limit: 1 });
      clock.advance(1000);
      await store.heartbeat(node.id);
      expect(await store.sweep()).toBe(2);
      expect((await store.cancellationsSince(0)).items).toMatchObject([
        { instructionId: ins[0]!.id, nodeId: node.id, code: "FLEETLINK_E_MESSAGE_EXPIRED" },
      ]);
    });

    test("sweep - the last delivery's lease ran out: logged DELIVERY_FAILED (the lease need not be current)", async () => {
      const { store, clock } = t;
      const run = await store.createRun();
      const node = await t.onlineNode("d");
      const [i] = await store.pushInstructions(run.id, [
        { dst: node.id, method: "m", ttlMs: 600_000, maxAttempts: 1 },
      ]);
      await store.claimInstructions({ nodeIds: [node.id], limit: 1 });
      clock.advance(LEASE);
      await store.heartbeat(node.id);
      expect(await store.sweep()).toBe(1);
      expect((await store.cancellationsSince(0)).items).toMatchObject([
        { instructionId: i!.id, nodeId: node.id, code: "FLEETLINK_E_DELIVERY_FAILED" },
      ]);
    });

    test("sweep - a held instruction of a node that went silent is logged NODE_UNAVAILABLE", async () => {
      const { store, clock } = t;
      const run = await store.createRun();
      const node = await t.onlineNode("u", 1000);
      const [i] = await store.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: 600_000 }]);
      await store.claimInstructions({ nodeIds: [node.id], limit: 1 });
      clock.advance(2000);
      expect(await store.sweep()).toBe(1);
      expect((await store.cancellationsSince(0)).items).toMatchObject([
        { instructionId: i!.id, nodeId: node.id, code: "FLEETLINK_E_NODE_UNAVAILABLE" },
      ]);
    });

    test("cancel log - reads in seq order with a limit; cleanup drops entries older than 10 minutes only", async () => {
      const { store, clock } = t;
      const run = await store.createRun();
      const node = await t.onlineNode("l");
      const ins = await store.pushInstructions(
        run.id,
        [1, 2, 3].map(() => ({ dst: node.id, method: "m", ttlMs: 3_600_000 })),
      );
      await store.claimInstructions({ nodeIds: [node.id], limit: 3 });
      for (const i of ins) await store.withdrawInstructions(run.id, [i.id]);
      const first = await store.cancellationsSince(0, 2);
      expect(first.items.map((c) => c.instructionId)).toEqual([ins[0]!.id, ins[1]!.id]);
      const rest = await store.cancellationsSince(first.seq, 2);
      expect(rest.items.map((c) => c.instructionId)).toEqual([ins[2]!.id]);
      expect(rest.seq).toBeGreaterThan(first.seq);
      clock.advance(10 * 60 * 1000 - 1);
      await store.cleanup(24 * 3600 * 1000);
      expect((await store.cancellationsSince(0)).items).toHaveLength(3);
      clock.advance(1);
      await store.cleanup(24 * 3600 * 1000);
      expect((await store.cancellationsSince(0)).items).toEqual([]);
      // The end stays where it was: a reader that starts now does not see old seqs again.
      expect((await store.cancellationsSince(null)).seq).toBeGreaterThanOrEqual(0);
    });
  });
};
