import { describe, expect, test } from "vitest";
import { DEFAULT_TENANT } from "../../src/protocol/types.ts";
import type { NewInstruction } from "../../src/store/store.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { bytes, type StoreFactory, useStore } from "./factory.ts";

/** A payload that holds no blob reference but makes PostgreSQL take the transaction path (a `\u` escape). */
const TX_PAYLOAD = bytes('{"x":"\\u0041"}');

/** Tenants: runs, nodes and enrollment tokens belong to one, and a run never reaches another's node. */
export const tenancyConformance = (factory: StoreFactory): void => {
  describe("tenants", () => {
    const t = useStore(factory);

    const item = (dst: string, extra: Partial<NewInstruction> = {}): NewInstruction => ({
      dst,
      method: "m",
      payload: bytes("p"),
      ttlMs: 60_000,
      ...extra,
    });
    const nodeOf = async (tenant: string | undefined, name: string) => {
      const n = await t.store.registerNode({ name, heartbeatIntervalMs: 60_000, tenant });
      return t.store.heartbeat(n.id);
    };

    test("tenants - runs, nodes and enrollment tokens carry their tenant (default: default) and list by it", async () => {
      const { store, clock } = t;
      const r0 = await store.createRun();
      clock.advance(1);
      const ra = await store.createRun({ tenant: "team-a" });
      clock.advance(1);
      const rb = await store.createRun({ tenant: "team_b" });
      expect([r0.tenant, ra.tenant, rb.tenant]).toEqual([DEFAULT_TENANT, "team-a", "team_b"]);
      expect((await store.getRun(ra.id)).tenant).toBe("team-a");
      expect((await store.listRuns()).map((r) => r.id)).toEqual([rb.id, ra.id, r0.id]);
      expect((await store.listRuns({ tenant: "team-a" })).map((r) => r.id)).toEqual([ra.id]);
      expect((await store.listRuns({ tenant: DEFAULT_TENANT })).map((r) => r.id)).toEqual([r0.id]);
      expect(await store.listRuns({ tenant: "nobody" })).toEqual([]);
      await store.transitionRun(rb.id, "pending", "running");
      expect(await store.listRuns({ tenant: "team_b", status: "pending" })).toEqual([]);
      expect((await store.listRuns({ tenant: "team_b", status: "running" })).map((r) => r.id)).toEqual([
        rb.id,
      ]);

      const n0 = await nodeOf(undefined, "n0");
      const na = await nodeOf("team-a", "na");
      const pa = await store.registerNode({ name: "pa", heartbeatIntervalMs: 1000, tenant: "team-a" });
      expect([n0.tenant, na.tenant, pa.tenant]).toEqual([DEFAULT_TENANT, "team-a", "team-a"]);
      expect((await store.getNode(na.id)).tenant).toBe("team-a");
      expect((await store.listNodes({ tenant: "team-a" })).map((n) => n.id).sort()).toEqual(
        [na.id, pa.id].sort(),
      );
      expect((await store.listNodes({ tenant: "team-a", status: "online" })).map((n) => n.id)).toEqual([
        na.id,
      ]);
      expect((await store.listNodes({ tenant: DEFAULT_TENANT })).map((n) => n.id)).toEqual([n0.id]);
      expect(await store.listNodes()).toHaveLength(3);

      const k0 = await store.createEnrollToken({ secretHash: "h0" });
      clock.advance(1);
      const ka = await store.createEnrollToken({ secretHash: "ha", tenant: "team-a" });
      expect([k0.tenant, ka.tenant]).toEqual([DEFAULT_TENANT, "team-a"]);
      expect((await store.listEnrollTokens({ tenant: "team-a" })).map((k) => k.id)).toEqual([ka.id]);
      expect((await store.listEnrollTokens()).map((k) => k.id)).toEqual([ka.id, k0.id]);
      expect((await store.useEnrollToken(ka.id, "ha")).tenant).toBe("team-a");
    });

    test("tenants - node names are per tenant: another tenant's live node neither holds a name nor is named by NAME_TAKEN", async () => {
      const { store } = t;
      const a = await nodeOf("team-a", "web");
      const b = await nodeOf("team-b", "web");
      const d = await nodeOf(undefined, "web");
      expect(new Set([a.id, b.id, d.id]).size).toBe(3);
      const e = await rejectsWith(
        store.registerNode({ name: "web", heartbeatIntervalMs: 1000, tenant: "team-b" }),
        "NAME_TAKEN",
        "name",
      );
      expect(e.message).toContain(b.id);
      expect(e.message).not.toContain(a.id);
      // Registrations of one name in two tenants racing on two handles: each tenant gets exactly one.
      const other = await t.replica();
      const out = await Promise.allSettled([
        store.registerNode({ name: "db", heartbeatIntervalMs: 60_000, tenant: "team-a" }),
        other.registerNode({ name: "db", heartbeatIntervalMs: 60_000, tenant: "team-a" }),
        store.registerNode({ name: "db", heartbeatIntervalMs: 60_000, tenant: "team-b" }),
        other.registerNode({ name: "db", heartbeatIntervalMs: 60_000, tenant: "team-b" }),
      ]);
      const won = out.flatMap((o) => (o.status === "fulfilled" ? [o.value.tenant] : []));
      expect(won.sort()).toEqual(["team-a", "team-b"]);
    });

    test("tenants - a malformed tenant is INVALID_ARGUMENT naming it, and nothing is written", async () => {
      const { store } = t;
      for (const bad of ["", "A", "-x", "a b", "a".repeat(64), "é", 7 as unknown as string]) {
        await rejectsWith(store.createRun({ tenant: bad }), "INVALID_ARGUMENT", "tenant");
        await rejectsWith(
          store.registerNode({ name: "x", heartbeatIntervalMs: 1000, tenant: bad }),
          "INVALID_ARGUMENT",
          "tenant",
        );
        await rejectsWith(
          store.createEnrollToken({ secretHash: "h", tenant: bad }),
          "INVALID_ARGUMENT",
          "tenant",
        );
        await rejectsWith(store.listRuns({ tenant: bad }), "INVALID_ARGUMENT", "tenant");
        await rejectsWith(store.listNodes({ tenant: bad }), "INVALID_ARGUMENT", "tenant");
        await rejectsWith(store.listEnrollTokens({ tenant: bad }), "INVALID_ARGUMENT", "tenant");
      }
      expect(await store.listRuns()).toEqual([]);
      expect(await store.listNodes()).toEqual([]);
      expect(await store.listEnrollTokens()).toEqual([]);
      expect((await store.createRun({ tenant: `a${"b".repeat(62)}` })).tenant).toHaveLength(63);
    });

    // Both payloads on both backends: PostgreSQL pushes the plain one in one statement (push-pg.ts) and the
    // other in a transaction (push.ts); SQLite takes the transaction path for both.
    for (const [path, payload] of [
      ["statement", bytes("p")],
      ["transaction", TX_PAYLOAD],
    ] as const)
      test(`tenants - a push to a node of another tenant fails like an unknown node, all or none (${path} path)`, async () => {
        const { store } = t;
        const runA = await store.createRun({ tenant: "team-a" });
        const runDefault = await store.createRun();
        const a1 = await nodeOf("team-a", "a1");
        const a2 = await nodeOf("team-a", "a2");
        const b1 = await nodeOf("team-b", "b1");
        const d1 = await nodeOf(undefined, "d1");
        const p = { payload };
        // One destination, and several (the lookup of one node and of a list are two statements).
        let e = await rejectsWith(
          store.pushInstructions(runA.id, [item(b1.id, p)]),
          "NODE_NOT_FOUND",
          "items[0].dst",
        );
        expect(e.message).toBe(`no node ${b1.id}`);
        e = await rejectsWith(
          store.pushInstructions(runA.id, [item(a1.id, p), item(a2.id, p), item(b1.id, p)]),
          "NODE_NOT_FOUND",
          "items[2].dst",
        );
        await rejectsWith(
          store.pushInstructions(runA.id, [item(d1.id, p)]),
          "NODE_NOT_FOUND",
          "items[0].dst",
        );
        await rejectsWith(
          store.pushInstructions(runDefault.id, [item(d1.id, p), item(a1.id, p)]),
          "NODE_NOT_FOUND",
          "items[1].dst",
        );
        expect(await store.listInstructions(runA.id)).toEqual([]);
        expect(await store.listInstructions(runDefault.id)).toEqual([]);
        // Nothing reached the other tenant's node.
        expect(await store.claimInstructions({ nodeIds: [b1.id, d1.id, a1.id], limit: 10 })).toEqual([]);
        // Own nodes are reached.
        const ok = await store.pushInstructions(runA.id, [item(a1.id, p), item(a2.id, p)]);
        expect(ok.map((i) => i.dst)).toEqual([a1.id, a2.id]);
        const mine = await store.pushInstructions(runDefault.id, [item(d1.id, p)]);
        expect(
          (await store.claimInstructions({ nodeIds: [d1.id, b1.id], limit: 10 })).map((i) => i.id),
        ).toEqual(mine.map((i) => i.id));
      });

    test("tenants - a group-commit batch with calls of two tenants: the cross-tenant call fails alone, the others commit", async () => {
      const { store } = t;
      const runA = await store.createRun({ tenant: "team-a" });
      const runB = await store.createRun({ tenant: "team-b" });
      const a1 = await nodeOf("team-a", "a1");
      const b1 = await nodeOf("team-b", "b1");
      for (const payload of [bytes("p"), TX_PAYLOAD]) {
        const p = { payload };
        const res = await store.pushBatch([
          { runId: runA.id, items: [item(a1.id, p)] },
          { runId: runB.id, items: [item(b1.id, p), item(a1.id, p)] },
          { runId: runB.id, items: [item(b1.id, p)] },
          { runId: runA.id, items: [item(b1.id, p)] },
        ]);
        expect(res.map((r) => r.ok)).toEqual([true, false, true, false]);
        for (const [k, field] of [
          [1, "items[1].dst"],
          [3, "items[0].dst"],
        ] as const) {
          const r = res[k]!;
          if (r.ok) throw new Error("expected a failure");
          expect(r.error).toMatchObject({ code: "FLEETLINK_E_NODE_NOT_FOUND", field });
        }
      }
      const a = await store.listInstructions(runA.id);
      const b = await store.listInstructions(runB.id);
      expect(a.map((i) => i.dst)).toEqual([a1.id, a1.id]);
      expect(b.map((i) => i.dst)).toEqual([b1.id, b1.id]);
    });

    test("tenants - leaseTo a node of another tenant's session leases nothing there", async () => {
      const { store } = t;
      const runA = await store.createRun({ tenant: "team-a" });
      const b1 = await nodeOf("team-b", "b1");
      await store.openSession({ nodeId: b1.id, sessionId: "s-b" });
      await rejectsWith(
        store.pushInstructions(runA.id, [item(b1.id, { leaseTo: "s-b" })]),
        "NODE_NOT_FOUND",
        "items[0].dst",
      );
      expect(
        await store.claimInstructions({ sessions: [{ nodeId: b1.id, sessionId: "s-b" }], limit: 5 }),
      ).toEqual([]);
    });
  });
};
