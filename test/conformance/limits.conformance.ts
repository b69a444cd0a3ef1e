import { describe, expect, test } from "vitest";
import { MAX_ERROR_MESSAGE_CHARS, MAX_TTL_MS } from "../../src/protocol/limits.ts";
import { storeReply } from "../../src/store/store.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { type StoreFactory, useStore } from "./factory.ts";

/** The store's own input checks are the last guard behind the hub's: limits hold whoever calls it. */
export const limitsConformance = (factory: StoreFactory): void => {
  describe("limits", () => {
    const t = useStore(factory);

    test("limits - a TTL beyond MAX_TTL_MS or more than 1000 attempts is refused, naming the item", async () => {
      const { store } = t;
      const run = await store.createRun();
      const n = await t.onlineNode("a");
      const good = { dst: n.id, method: "m", ttlMs: 1000 };
      await rejectsWith(
        store.pushInstructions(run.id, [good, { ...good, ttlMs: MAX_TTL_MS + 1 }]),
        "INVALID_ARGUMENT",
        "items[1].ttlMs",
      );
      await rejectsWith(
        store.pushInstructions(run.id, [{ ...good, ttlMs: Number.MAX_SAFE_INTEGER }]),
        "INVALID_ARGUMENT",
        "items[0].ttlMs",
      );
      await rejectsWith(
        store.pushInstructions(run.id, [good, good, { ...good, maxAttempts: 1001 }]),
        "INVALID_ARGUMENT",
        "items[2].maxAttempts",
      );
      expect((await store.stats()).instructions.pending).toBe(0);
      const [ins] = await store.pushInstructions(run.id, [{ ...good, ttlMs: MAX_TTL_MS, maxAttempts: 1000 }]);
      expect(ins).toMatchObject({ ttlMs: MAX_TTL_MS, expiresAt: t.clock() + MAX_TTL_MS, maxAttempts: 1000 });
    });

    test("limits - a reply whose error message is longer than 4 × MAX_ERROR_MESSAGE_CHARS is refused", async () => {
      const { store } = t;
      const run = await store.createRun();
      const n = await t.onlineNode("a");
      const [x, y] = await store.pushInstructions(run.id, [
        { dst: n.id, method: "m", ttlMs: 60_000 },
        { dst: n.id, method: "m", ttlMs: 60_000 },
      ]);
      const max = MAX_ERROR_MESSAGE_CHARS * 4;
      const [tooLong, fits] = await store.storeReplies([
        {
          runId: run.id,
          nodeId: n.id,
          replyTo: x!.id,
          error: { code: "FLEETLINK_E_HANDLER_FAILED", message: "x".repeat(max + 1) },
        },
        {
          runId: run.id,
          nodeId: n.id,
          replyTo: y!.id,
          error: { code: "FLEETLINK_E_HANDLER_FAILED", message: "y".repeat(max) },
        },
      ]);
      expect(tooLong).toMatchObject({ ok: false, error: { field: "items[0].error.message" } });
      expect(fits).toMatchObject({ ok: true });
      await rejectsWith(
        storeReply(store, {
          runId: run.id,
          nodeId: n.id,
          replyTo: x!.id,
          error: { code: "E", message: "z".repeat(max + 1) },
        }),
        "INVALID_ARGUMENT",
        "items[0].error.message",
      );
      expect((await store.getReplies(run.id, [x!.id, y!.id])).map((r) => r.error?.message.length)).toEqual([
        max,
      ]);
    });
  });
};
