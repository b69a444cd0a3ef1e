import { describe, expect, test } from "vitest";
import { newId } from "../../src/protocol/ids.ts";
import type { StoreReplyResult } from "../../src/store/store.ts";
import { type StoreFactory, useStore } from "./factory.ts";

const refusedId = (r: StoreReplyResult | undefined) =>
  r?.ok === false && r.error.code === "FLEETLINK_E_INVALID_ARGUMENT" && r.error.field === "id";

/** A node that reuses a reply id loses only that reply, never its neighbours' (every backend, per item). */
export const replyIdConformance = (factory: StoreFactory): void => {
  describe("reply ids", () => {
    const t = useStore(factory);

    test("reply ids - a reply id used twice in one batch: the second use is refused, every other item is stored", async () => {
      const { store } = t;
      const run = await store.createRun();
      const a = await t.onlineNode("a");
      const b = await t.onlineNode("b");
      const [x, y, z] = await store.pushInstructions(run.id, [
        { dst: a.id, method: "m", ttlMs: 60_000 },
        { dst: a.id, method: "m", ttlMs: 60_000 },
        { dst: a.id, method: "m", ttlMs: 60_000 },
      ]);
      const [w] = await store.pushInstructions(run.id, [{ dst: b.id, method: "m", ttlMs: 60_000 }]);
      const id = newId();
      const res = await store.storeReplies([
        { id, runId: run.id, nodeId: a.id, replyTo: x!.id },
        { runId: run.id, nodeId: b.id, replyTo: w!.id },
        { id, runId: run.id, nodeId: a.id, replyTo: y!.id },
        { runId: run.id, nodeId: a.id, replyTo: z!.id },
      ]);
      expect(res[0]).toMatchObject({ ok: true, duplicate: false, reply: { id, replyTo: x!.id } });
      expect(res[1]).toMatchObject({ ok: true, duplicate: false });
      expect(refusedId(res[2])).toBe(true);
      expect(res[3]).toMatchObject({ ok: true, duplicate: false });
      // The refused instruction did not end: it is still open, with no reply, and can be answered properly.
      expect((await store.getInstructions(run.id, [y!.id]))[0]!.state).not.toBe("done");
      expect(await store.getReplies(run.id, [y!.id])).toEqual([]);
      const again = await store.storeReplies([{ runId: run.id, nodeId: a.id, replyTo: y!.id }]);
      expect(again[0]).toMatchObject({ ok: true, duplicate: false });
      expect((await store.claimReplies({ runId: run.id })).map((r) => r.replyTo).sort()).toEqual(
        [x!.id, y!.id, z!.id, w!.id].sort(),
      );
    });

    test("reply ids - two handles storing at once with a colliding reply id: exactly one stored, the other refused, the rest stored", async () => {
      const { store } = t;
      const other = await t.replica();
      const run = await store.createRun();
      const a = await t.onlineNode("a");
      const b = await t.onlineNode("b");
      const c = await t.onlineNode("c");
      for (let round = 0; round < 25; round++) {
        const [i1, i2] = await store.pushInstructions(run.id, [
          { dst: a.id, method: "m", ttlMs: 60_000 },
          { dst: a.id, method: "m", ttlMs: 60_000 },
        ]);
        const [j1, j2] = await store.pushInstructions(run.id, [
          { dst: b.id, method: "m", ttlMs: 60_000 },
          { dst: c.id, method: "m", ttlMs: 60_000 },
        ]);
        const id = newId();
        const [r1, r2] = await Promise.all([
          store.storeReplies([
            { runId: run.id, nodeId: b.id, replyTo: j1!.id },
            { id, runId: run.id, nodeId: a.id, replyTo: i1!.id },
          ]),
          other.storeReplies([
            { id, runId: run.id, nodeId: a.id, replyTo: i2!.id },
            { runId: run.id, nodeId: c.id, replyTo: j2!.id },
          ]),
        ]);
        expect(r1![0]).toMatchObject({ ok: true, duplicate: false });
        expect(r2![1]).toMatchObject({ ok: true, duplicate: false });
        const colliding = [r1![1], r2![0]];
        expect(colliding.filter((r) => r?.ok)).toHaveLength(1);
        expect(colliding.filter(refusedId)).toHaveLength(1);
        const lost = r1![1]!.ok ? i2! : i1!;
        expect((await store.getInstructions(run.id, [lost.id]))[0]!.state).not.toBe("done");
        expect(await store.getReplies(run.id, [lost.id])).toEqual([]);
        expect(await store.getReplies(run.id, [i1!.id, i2!.id, j1!.id, j2!.id])).toHaveLength(3);
      }
    });
  });
};
