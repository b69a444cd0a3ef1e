import { describe, expect, test } from "vitest";
import { newId } from "../../src/protocol/ids.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { bytes, type StoreFactory, useStore } from "./factory.ts";

/** The list reads behind GET /v1/runs and GET /v1/runs/:run/instructions (the CLI and dashboard use them). */
export const listingConformance = (factory: StoreFactory): void => {
  describe("listing", () => {
    const t = useStore(factory);

    test("listRuns - newest first, filtered by status, limited", async () => {
      const { store, clock } = t;
      const made = [];
      for (let i = 0; i < 5; i++) {
        made.push(await store.createRun());
        clock.advance(1);
      }
      await store.transitionRun(made[1]!.id, "pending", "running");
      await store.transitionRun(made[3]!.id, "pending", "running");
      expect((await store.listRuns()).map((r) => r.id)).toEqual(made.map((r) => r.id).reverse());
      const running = await store.listRuns({ status: "running" });
      expect(running.map((r) => r.id)).toEqual([made[3]!.id, made[1]!.id]);
      expect(running[0]).toEqual(await store.getRun(made[3]!.id));
      expect((await store.listRuns({ limit: 2 })).map((r) => r.id)).toEqual([made[4]!.id, made[3]!.id]);
      expect(await store.listRuns({ status: "finished" })).toEqual([]);
    });

    test("listRuns - runs created in the same ms still come newest first", async () => {
      const { store } = t;
      const a = await store.createRun();
      const b = await store.createRun();
      expect((await store.listRuns()).map((r) => r.id)).toEqual([b.id, a.id]);
    });

    test("listRuns - at most 100 by default and 1000 when asked", async () => {
      const { store } = t;
      for (let i = 0; i < 101; i++) await store.createRun();
      expect(await store.listRuns()).toHaveLength(100);
      expect(await store.listRuns({ limit: 1000 })).toHaveLength(101);
    });

    test("listRuns - a bad status or limit is refused, naming the field", async () => {
      const { store } = t;
      await rejectsWith(store.listRuns({ status: "done" as never }), "INVALID_ARGUMENT", "status");
      await rejectsWith(store.listRuns({ limit: 0 }), "INVALID_ARGUMENT", "limit");
      await rejectsWith(store.listRuns({ limit: 1001 }), "INVALID_ARGUMENT", "limit");
      await rejectsWith(store.listRuns({ limit: 1.5 }), "INVALID_ARGUMENT", "limit");
      await rejectsWith(store.listRuns({ limit: "10" as never }), "INVALID_ARGUMENT", "limit");
    });

    test("listInstructions - a run's instructions newest first, only that run's, limited", async () => {
      const { store, clock } = t;
      const run = await store.createRun();
      const other = await store.createRun();
      const n = await t.onlineNode("a");
      const item = (method: string) => ({ dst: n.id, method, payload: bytes(method), ttlMs: 60_000 });
      const first = await store.pushInstructions(run.id, [item("m0"), item("m1")]);
      clock.advance(5);
      const second = await store.pushInstructions(run.id, [item("m2")]);
      await store.pushInstructions(other.id, [item("x")]);
      await store.claimInstructions({ nodeIds: [n.id], limit: 1 });
      const listed = await store.listInstructions(run.id);
      expect(listed.map((i) => i.method)).toEqual(["m2", "m1", "m0"]);
      expect(listed[2]).toMatchObject({ id: first[0]!.id, state: "leased", attempts: 1, runId: run.id });
      expect(listed[0]).toEqual((await store.getInstructions(run.id, [second[0]!.id]))[0]);
      expect((await store.listInstructions(run.id, { limit: 1 })).map((i) => i.id)).toEqual([second[0]!.id]);
    });

    test("listInstructions - a run without instructions is empty; an unknown run is RUN_NOT_FOUND", async () => {
      const { store } = t;
      const run = await store.createRun();
      expect(await store.listInstructions(run.id)).toEqual([]);
      await rejectsWith(store.listInstructions(newId()), "RUN_NOT_FOUND");
      await rejectsWith(store.listInstructions("nope"), "INVALID_ARGUMENT", "runId");
      await rejectsWith(store.listInstructions(run.id, { limit: 1001 }), "INVALID_ARGUMENT", "limit");
      await rejectsWith(store.listInstructions(run.id, { limit: -1 }), "INVALID_ARGUMENT", "limit");
    });
  });
};
