import { describe, expect, test } from "vitest";
import type { NodeRecord, Run } from "../../src/protocol/types.ts";
import { ABANDONED_REASON, type Store, storeReply } from "../../src/store/store.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { type StoreFactory, useStore } from "./factory.ts";

const exists = (p: Promise<unknown>): Promise<boolean> =>
  p.then(
    () => true,
    (e: { code?: string }) => {
      if (e.code === "FLEETLINK_E_NODE_NOT_FOUND" || e.code === "FLEETLINK_E_RUN_NOT_FOUND") return false;
      throw e;
    },
  );

/** Runs f after ms, so that racing calls meet at different points of a cleanup. */
const delayed = <T>(ms: number, f: () => Promise<T>): Promise<T> =>
  new Promise((r) => setTimeout(r, ms)).then(f);

const codeOf = (r: PromiseSettledResult<unknown>): string | undefined =>
  r.status === "rejected" ? (r.reason as { code?: string }).code : undefined;

/** `cleanup` of silent nodes and abandoned runs, alone and on racing replicas (every backend). */
export const cleanupConformance = (factory: StoreFactory): void => {
  describe("cleanup", () => {
    const t = useStore(factory);

    test("cleanup - deletes nodes offline, unregistered or never approved for longer than the cutoff; their credential stops working", async () => {
      const { store, clock } = t;
      const t0 = clock();
      const node = async (name: string, approved = true) => {
        const n = await store.registerNode({
          name,
          heartbeatIntervalMs: 1000,
          credentialHash: `hash-${name}`,
          approved,
        });
        return approved ? store.heartbeat(n.id) : n;
      };
      const offline = await node("offline"); // online until t0 + 2000
      const gone = await node("gone");
      await store.unregisterNode(gone.id);
      const pending = await node("pending", false); // never approved: its last sign of life is its creation
      const back = await node("back");
      const waiting = await store.registerNode({ name: "waiting", heartbeatIntervalMs: 1000 });
      clock.advance(3000);
      await store.sweep();
      expect((await store.getNode(offline.id)).status).toBe("offline");
      // Online until t0 + 5000 and never swept: offline all the same once its window is over.
      const stale = await node("stale");
      clock.advance(3000);
      const recent = await node("recent"); // online until t0 + 8000: silent, but not for long enough
      clock.advance(4000);
      await store.heartbeat(back.id); // offline for a long time, and back just before the cleanup
      expect(clock()).toBe(t0 + 10_000);

      const zero = {
        instructions: 0,
        replies: 0,
        runs: 0,
        abandonedRuns: 0,
        nodes: 0,
        enrollTokens: 0,
        principals: 0,
      };
      expect(await store.cleanup(20_000)).toEqual(zero);
      expect(await store.cleanup(4000)).toEqual({ ...zero, nodes: 4 });
      expect(await store.cleanup(4000)).toEqual(zero);

      for (const n of [offline, gone, pending, stale]) {
        await rejectsWith(store.getNode(n.id), "NODE_NOT_FOUND");
        // The hub finds no node for the credential (a stream upgrade with it gets 401), and it cannot come back.
        await rejectsWith(store.heartbeat(n.id), "NODE_NOT_FOUND");
        await rejectsWith(store.openSession({ nodeId: n.id, sessionId: "s" }), "NODE_NOT_FOUND");
      }
      const run = await store.createRun();
      await rejectsWith(
        store.pushInstructions(run.id, [{ dst: offline.id, method: "m", ttlMs: 1000 }]),
        "NODE_NOT_FOUND",
        "items[0].dst",
      );
      const left = await store.listNodes();
      expect(left.map((n) => n.name).sort()).toEqual(["back", "recent", "waiting"]);
      expect(left.map((n) => n.id).sort()).toEqual([back.id, recent.id, waiting.id].sort());
      expect(left.map((n) => n.credentialHash)).not.toContain("hash-offline");
      // Its name is free (as it was once the node went offline).
      expect((await store.registerNode({ name: "offline", heartbeatIntervalMs: 1000 })).name).toBe("offline");
    });

    test("cleanup - a node is kept while it has a live instruction, however long it has been silent", async () => {
      const { store, clock } = t;
      const run = await store.createRun();
      const held = await t.onlineNode("held", 1000);
      const plain = await t.onlineNode("plain", 1000);
      await store.pushInstructions(run.id, [
        { dst: held.id, method: "m", ttlMs: 60_000, holdWhileOffline: true },
        { dst: plain.id, method: "m", ttlMs: 60_000 },
      ]);
      clock.advance(30_000);
      // Both silent for 28 s, both still hold a live instruction (no sweep has ended plain's yet).
      expect(await store.cleanup(10_000)).toMatchObject({ nodes: 0, abandonedRuns: 0 });
      expect(await store.sweep()).toBe(1); // plain's ends with NODE_UNAVAILABLE; held's waits for its node
      expect(await store.cleanup(10_000)).toMatchObject({ nodes: 1, abandonedRuns: 0 });
      await rejectsWith(store.getNode(plain.id), "NODE_NOT_FOUND");
      expect((await store.getNode(held.id)).status).toBe("offline");
      clock.advance(31_000);
      expect(await store.sweep()).toBe(1); // held's expires
      // The run's newest reply is from just now: not abandoned.
      expect(await store.cleanup(10_000)).toMatchObject({ nodes: 1, abandonedRuns: 0, runs: 0 });
      await rejectsWith(store.getNode(held.id), "NODE_NOT_FOUND");
      expect((await store.getRun(run.id)).status).toBe("running"); // started by its push
    });

    test("cleanup - refuses an age that is negative or not an integer (a cutoff in the future would delete live nodes)", async () => {
      const { store } = t;
      const n = await t.onlineNode("n", 1000);
      await rejectsWith(store.cleanup(-1), "INVALID_ARGUMENT", "olderThanMs");
      await rejectsWith(store.cleanup(1.5), "INVALID_ARGUMENT", "olderThanMs");
      await rejectsWith(store.cleanup(Number.NaN), "INVALID_ARGUMENT", "olderThanMs");
      expect((await store.cleanup(0)).nodes).toBe(0);
      expect((await store.getNode(n.id)).status).toBe("online");
    });

    test("cleanup - finishes runs abandoned for longer than the cutoff, then removes them with their claimed messages", async () => {
      const { store, clock } = t;
      const node = await t.onlineNode("n", 600_000); // online throughout
      const push = (runId: string) =>
        store.pushInstructions(runId, [{ dst: node.id, method: "m", ttlMs: 600_000 }]);
      const answer = async (runId: string, id: string) =>
        storeReply(store, { runId, nodeId: node.id, replyTo: id });

      const empty = await store.createRun(); // nothing ever happened
      const answered = await store.createRun(); // answered, the reply claimed
      const [a] = await push(answered.id);
      await answer(answered.id, a!.id);
      await store.claimReplies({ runId: answered.id });
      const unread = await store.createRun(); // running, its reply never claimed
      await store.transitionRun(unread.id, "pending", "running");
      const [u] = await push(unread.id);
      await answer(unread.id, u!.id);
      const waiting = await store.createRun(); // a live instruction: never touched, however old
      await push(waiting.id);
      const done = await store.createRun(); // finished the ordinary way
      await store.transitionRun(done.id, "pending", "finished", "ok");
      const lateStatus = await store.createRun();
      const lateReply = await store.createRun();
      const [r] = await push(lateReply.id);
      clock.advance(10_000);
      await store.transitionRun(lateStatus.id, "pending", "running"); // recent activity: its status
      await answer(lateReply.id, r!.id); // recent activity: a reply
      clock.advance(10_000);
      const untouched = [waiting, lateStatus, lateReply];
      const before = await Promise.all(untouched.map((x) => store.getRun(x.id)));

      expect(await store.cleanup(15_000)).toEqual({
        instructions: 1,
        replies: 1,
        runs: 3, // empty, answered (abandoned) and done
        abandonedRuns: 3, // empty, answered, unread
        nodes: 0,
        enrollTokens: 0,
        principals: 0,
      });
      await rejectsWith(store.getRun(empty.id), "RUN_NOT_FOUND");
      await rejectsWith(store.getRun(answered.id), "RUN_NOT_FOUND");
      await rejectsWith(store.getRun(done.id), "RUN_NOT_FOUND");
      // Kept while a reply is unclaimed, finished so that a late coordinator learns what happened.
      expect(await store.getRun(unread.id)).toMatchObject({
        status: "finished",
        reason: "abandoned by cleanup",
        updatedAt: clock(),
      });
      await rejectsWith(
        store.pushInstructions(unread.id, [{ dst: node.id, method: "m", ttlMs: 1000 }]),
        "RUN_FINISHED",
      );
      await rejectsWith(store.transitionRun(unread.id, "running", "finished"), "STATUS_CONFLICT", "from");
      expect(await Promise.all(untouched.map((x) => store.getRun(x.id)))).toEqual(before);
      expect((await store.cleanup(15_000)).abandonedRuns).toBe(0);

      expect(await store.claimReplies({ runId: unread.id })).toHaveLength(1);
      clock.advance(20_000);
      // unread goes with its claimed reply; lateStatus and lateReply are abandoned by now, lateStatus (empty)
      // removed at once, lateReply kept for its unclaimed reply.
      expect(await store.cleanup(15_000)).toMatchObject({
        instructions: 1,
        replies: 1,
        runs: 2,
        abandonedRuns: 2,
      });
      await rejectsWith(store.getRun(unread.id), "RUN_NOT_FOUND");
      await rejectsWith(store.getRun(lateStatus.id), "RUN_NOT_FOUND");
      expect(await store.getRun(lateReply.id)).toMatchObject({
        status: "finished",
        reason: "abandoned by cleanup",
      });
      expect((await store.getRun(waiting.id)).status).toBe("running");
    });

    test("cleanup - replicas cleaning up at once delete each node once, and never one whose heartbeat or push won", async () => {
      const { store, clock } = t;
      const other = await t.replica();
      const nodeIds: string[] = [];
      for (let round = 0; round < 20; round++) {
        const ns: NodeRecord[] = [];
        for (let i = 0; i < 4; i++) ns.push(await t.onlineNode(`r${round}-${i}`, 1000));
        nodeIds.push(...ns.map((n) => n.id));
        clock.advance(10_000);
        const run = await store.createRun(); // new: not abandoned
        const alive = async () => {
          const out = new Set<string>();
          for (const id of nodeIds) if (await exists(store.getNode(id))) out.add(id);
          return out;
        };
        const beforeIds = await alive();
        const [x, y, beat, pushed] = await Promise.allSettled([
          store.cleanup(5000),
          other.cleanup(5000),
          delayed(round % 5, () => other.heartbeat(ns[0]!.id)),
          delayed(round % 4, () =>
            other.pushInstructions(run.id, [
              { dst: ns[1]!.id, method: "m", ttlMs: 600_000, holdWhileOffline: true },
            ]),
          ),
        ]);
        if (x.status === "rejected") throw x.reason;
        if (y.status === "rejected") throw y.reason;
        const afterIds = await alive();
        const deleted = [...beforeIds].filter((id) => !afterIds.has(id));
        expect(x.value.nodes + y.value.nodes, `round ${round}`).toBe(deleted.length);
        // Whichever came first: the heartbeat (the node stays) or the cleanup (the heartbeat finds no node).
        expect(afterIds.has(ns[0]!.id), `round ${round}`).toBe(beat.status === "fulfilled");
        if (beat.status === "rejected") expect(codeOf(beat)).toBe("FLEETLINK_E_NODE_NOT_FOUND");
        // A pushed instruction never points at a deleted node.
        expect(afterIds.has(ns[1]!.id), `round ${round}`).toBe(pushed.status === "fulfilled");
        if (pushed.status === "rejected") expect(codeOf(pushed)).toBe("FLEETLINK_E_NODE_NOT_FOUND");
        expect(afterIds.has(ns[2]!.id) || afterIds.has(ns[3]!.id)).toBe(false);
      }
    });

    test("cleanup - replicas racing abandon each run once; a push or transition racing it either lands or is refused", async () => {
      const { store, clock } = t;
      const other: Store = await t.replica();
      const node = await t.onlineNode("n", 600_000);
      const runIds: string[] = [];
      const existing = async () => {
        const out = new Set<string>();
        for (const id of runIds) if (await exists(store.getRun(id))) out.add(id);
        return out;
      };
      for (let round = 0; round < 20; round++) {
        const runs: Run[] = [];
        for (let i = 0; i < 4; i++) runs.push(await store.createRun());
        runIds.push(...runs.map((r) => r.id));
        // Messages that both replicas may try to delete.
        const [m] = await store.pushInstructions(runs[2]!.id, [
          { dst: node.id, method: "m", ttlMs: 600_000 },
        ]);
        await storeReply(store, { runId: runs[2]!.id, nodeId: node.id, replyTo: m!.id });
        await store.claimReplies({ runId: runs[2]!.id });
        clock.advance(10_000);
        const before = await existing();
        const [x, y, pushed, moved] = await Promise.allSettled([
          store.cleanup(5000),
          other.cleanup(5000),
          delayed(round % 3, () =>
            other.pushInstructions(runs[0]!.id, [{ dst: node.id, method: "m", ttlMs: 600_000 }]),
          ),
          delayed((round + 1) % 3, () => other.transitionRun(runs[1]!.id, "pending", "running")),
        ]);
        if (x.status === "rejected") throw x.reason;
        if (y.status === "rejected") throw y.reason;
        const after = await existing();
        const label = `round ${round}`;
        expect(x.value.abandonedRuns + y.value.abandonedRuns, label).toBe(
          4 - (pushed.status === "fulfilled" ? 1 : 0) - (moved.status === "fulfilled" ? 1 : 0),
        );
        expect(x.value.runs + y.value.runs, label).toBe([...before].filter((id) => !after.has(id)).length);
        expect(
          [x.value.instructions + y.value.instructions, x.value.replies + y.value.replies],
          label,
        ).toEqual([1, 1]);
        if (pushed.status === "fulfilled") {
          expect(await store.getRun(runs[0]!.id)).toMatchObject({ status: "running" });
          expect((await store.getInstructions(runs[0]!.id, [pushed.value[0]!.id]))[0]?.state).toBe("pending");
        } else {
          // Abandoned and removed in one transaction: the push finds no run.
          expect(codeOf(pushed), label).toBe("FLEETLINK_E_RUN_NOT_FOUND");
          expect(after.has(runs[0]!.id), label).toBe(false);
        }
        if (moved.status === "fulfilled") {
          expect(await store.getRun(runs[1]!.id)).toMatchObject({ status: "running" });
          // Finished now, so that it is no candidate in the next round.
          await store.transitionRun(runs[1]!.id, "running", "finished");
        } else {
          expect(codeOf(moved), label).toBe("FLEETLINK_E_RUN_NOT_FOUND");
          expect(after.has(runs[1]!.id), label).toBe(false);
        }
        expect(after.has(runs[3]!.id), label).toBe(false);
        // Gone with its messages, or (when the other replica took the messages) abandoned, to go next time.
        if (after.has(runs[2]!.id))
          expect(await store.getRun(runs[2]!.id), label).toMatchObject({ reason: ABANDONED_REASON });
      }
    });
  });
};
