import { describe, expect, test } from "vitest";
import { newId } from "../../src/protocol/ids.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { type StoreFactory, useStore } from "./factory.ts";

/** Node approval, unique live names and enrollment tokens (every backend). */
export const enrollConformance = (factory: StoreFactory): void => {
  describe("enrollment", () => {
    const t = useStore(factory);

    test("approval - nodes are approved by default; a pending node is approved once, idempotently", async () => {
      const { store } = t;
      const auto = await store.registerNode({ name: "auto", heartbeatIntervalMs: 1000 });
      expect(auto.approved).toBe(true);
      const pending = await store.registerNode({ name: "p", heartbeatIntervalMs: 1000, approved: false });
      expect(pending.approved).toBe(false);
      expect((await store.getNode(pending.id)).approved).toBe(false);
      expect((await store.listNodes()).map((n) => [n.name, n.approved]).sort()).toEqual([
        ["auto", true],
        ["p", false],
      ]);
      const ok = await store.approveNode(pending.id);
      expect(ok).toMatchObject({ id: pending.id, approved: true, status: "registered" });
      expect(await store.approveNode(pending.id)).toEqual(ok);
      expect((await store.getNode(pending.id)).approved).toBe(true);
      await rejectsWith(store.approveNode(newId()), "NODE_NOT_FOUND");
      await rejectsWith(store.approveNode("nope"), "INVALID_ARGUMENT", "nodeId");
      const gone = await store.registerNode({ name: "g", heartbeatIntervalMs: 1000, approved: false });
      await store.unregisterNode(gone.id);
      await rejectsWith(store.approveNode(gone.id), "NODE_UNREGISTERED");
      expect((await store.getNode(gone.id)).approved).toBe(false);
    });

    test("names - a name held by a live node is refused with NAME_TAKEN; offline and unregistered holders do not block", async () => {
      const { store, clock } = t;
      const first = await store.registerNode({ name: "a", heartbeatIntervalMs: 1000 });
      // Just registered: it has not had a chance to come online yet, so it holds the name for 2 × interval.
      await rejectsWith(store.registerNode({ name: "a", heartbeatIntervalMs: 1000 }), "NAME_TAKEN");
      await rejectsWith(
        store.registerNode({ name: "a", heartbeatIntervalMs: 1000, approved: false }),
        "NAME_TAKEN",
      );
      expect((await store.registerNode({ name: "A", heartbeatIntervalMs: 1000 })).name).toBe("A");
      clock.advance(2000);
      const second = await store.registerNode({ name: "a", heartbeatIntervalMs: 1000 });
      expect(second.id).not.toBe(first.id);
      await store.heartbeat(second.id);
      clock.advance(1999);
      await rejectsWith(store.registerNode({ name: "a", heartbeatIntervalMs: 1000 }), "NAME_TAKEN");
      clock.advance(1);
      // Its window passed (whether or not a sweep marked it offline yet).
      const third = await store.registerNode({ name: "a", heartbeatIntervalMs: 60_000 });
      await store.sweep();
      expect((await store.getNode(second.id)).status).toBe("offline");
      await rejectsWith(store.registerNode({ name: "a", heartbeatIntervalMs: 1000 }), "NAME_TAKEN");
      await store.unregisterNode(third.id);
      const fourth = await store.registerNode({ name: "a", heartbeatIntervalMs: 1000, approved: false });
      expect(fourth).toMatchObject({ name: "a", approved: false });
      expect((await store.listNodes()).filter((n) => n.name === "a")).toHaveLength(4);
    });

    test("names - racing registrations of one name on two handles: exactly one wins", async () => {
      const { store } = t;
      const other = await t.replica();
      for (let round = 0; round < 15; round++) {
        const name = `race-${round}`;
        const results = await Promise.allSettled([
          store.registerNode({ name, heartbeatIntervalMs: 60_000 }),
          other.registerNode({ name, heartbeatIntervalMs: 60_000 }),
          other.registerNode({ name, heartbeatIntervalMs: 60_000 }),
        ]);
        expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
        for (const r of results)
          if (r.status === "rejected") expect(r.reason.code).toBe("FLEETLINK_E_NAME_TAKEN");
      }
      expect(await store.listNodes()).toHaveLength(15);
    });

    test("names - enrolments arriving together each get their own outcome, as if registered one by one", async () => {
      const { store, clock } = t;
      const held = await store.registerNode({ name: "held", heartbeatIntervalMs: 1000 });
      const out = await Promise.allSettled([
        store.registerNode({ name: "n1", heartbeatIntervalMs: 1000, credentialHash: "h1" }),
        store.registerNode({ name: "held", heartbeatIntervalMs: 1000 }),
        store.registerNode({ name: "n2", heartbeatIntervalMs: 2000, approved: false }),
        store.registerNode({ name: "n1", heartbeatIntervalMs: 1000 }),
      ]);
      expect(out.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled", "rejected"]);
      const [n1, taken, n2, again] = out;
      expect((n1 as PromiseFulfilledResult<unknown>).value).toMatchObject({
        name: "n1",
        status: "registered",
        heartbeatIntervalMs: 1000,
        credentialHash: "h1",
        createdAt: clock(),
        approved: true,
        onlineUntil: null,
      });
      expect((n2 as PromiseFulfilledResult<unknown>).value).toMatchObject({
        heartbeatIntervalMs: 2000,
        approved: false,
      });
      for (const r of [taken, again])
        expect((r as PromiseRejectedResult).reason.code).toBe("FLEETLINK_E_NAME_TAKEN");
      expect((taken as PromiseRejectedResult).reason.message).toContain(held.id);
      expect((await store.listNodes()).map((n) => n.name).sort()).toEqual(["held", "n1", "n2"]);
    });

    test("tokens - create, list newest first, revoke idempotently", async () => {
      const { store, clock } = t;
      const a = await store.createEnrollToken({
        secretHash: "ha",
        label: "rack 1",
        expiresAt: clock() + 5000,
        uses: 3,
      });
      expect(a).toEqual({
        id: a.id,
        tenant: "default",
        label: "rack 1",
        secretHash: "ha",
        createdAt: clock(),
        expiresAt: clock() + 5000,
        uses: 3,
        used: 0,
        revoked: false,
      });
      const b = await store.createEnrollToken({ secretHash: "hb" });
      expect(b).toMatchObject({ label: null, expiresAt: null, uses: null, used: 0, revoked: false });
      clock.advance(10);
      const c = await store.createEnrollToken({ secretHash: "hc", label: null, expiresAt: null, uses: null });
      expect((await store.listEnrollTokens()).map((x) => x.id)).toEqual([c.id, b.id, a.id]);
      const revoked = await store.revokeEnrollToken(a.id);
      expect(revoked).toEqual({ ...a, revoked: true });
      expect(await store.revokeEnrollToken(a.id)).toEqual(revoked);
      expect((await store.listEnrollTokens()).find((x) => x.id === a.id)?.revoked).toBe(true);
      await rejectsWith(store.revokeEnrollToken(newId()), "TOKEN_NOT_FOUND");
      await rejectsWith(store.revokeEnrollToken("nope"), "INVALID_ARGUMENT", "id");
      await rejectsWith(store.createEnrollToken({ secretHash: "" }), "INVALID_ARGUMENT", "secretHash");
      await rejectsWith(store.createEnrollToken({ secretHash: "h", uses: 0 }), "INVALID_ARGUMENT", "uses");
      await rejectsWith(store.createEnrollToken({ secretHash: "h", label: "" }), "INVALID_ARGUMENT", "label");
      await rejectsWith(
        store.createEnrollToken({ secretHash: "h", expiresAt: 1.5 }),
        "INVALID_ARGUMENT",
        "expiresAt",
      );
      expect(await store.listEnrollTokens()).toHaveLength(3);
    });

    test("tokens - a use checks secret, revocation, expiry and uses, and counts", async () => {
      const { store, clock } = t;
      const tok = await store.createEnrollToken({ secretHash: "good", expiresAt: clock() + 1000, uses: 2 });
      const refused = async (p: Promise<unknown>, why: RegExp) =>
        expect((await rejectsWith(p, "UNAUTHORIZED")).message).toMatch(why);
      await refused(store.useEnrollToken(tok.id, "bad"), /unknown/);
      await refused(store.useEnrollToken(newId(), "good"), /unknown/);
      await refused(store.useEnrollToken("not-an-id", "good"), /unknown/);
      expect((await store.useEnrollToken(tok.id, "good")).used).toBe(1);
      expect(await store.useEnrollToken(tok.id, "good")).toMatchObject({ id: tok.id, used: 2, uses: 2 });
      await refused(store.useEnrollToken(tok.id, "good"), /used up/);
      expect((await store.listEnrollTokens())[0]!.used).toBe(2);

      const timed = await store.createEnrollToken({ secretHash: "t", expiresAt: clock() + 1000 });
      clock.advance(999);
      expect((await store.useEnrollToken(timed.id, "t")).used).toBe(1);
      clock.advance(1);
      await refused(store.useEnrollToken(timed.id, "t"), /expired/);

      const forever = await store.createEnrollToken({ secretHash: "f" });
      for (let i = 0; i < 5; i++) await store.useEnrollToken(forever.id, "f");
      expect((await store.useEnrollToken(forever.id, "f")).used).toBe(6);
      await store.revokeEnrollToken(forever.id);
      await refused(store.useEnrollToken(forever.id, "f"), /revoked/);
      // A wrong secret learns nothing about the token's state.
      await refused(store.useEnrollToken(forever.id, "bad"), /unknown/);
    });

    test("tokens - a check refuses what a use would, with the same reasons, and takes no use", async () => {
      const { store, clock } = t;
      const tok = await store.createEnrollToken({
        secretHash: "good",
        expiresAt: clock() + 1000,
        uses: 1,
        tenant: "team-a",
      });
      const refused = async (p: Promise<unknown>, why: RegExp) =>
        expect((await rejectsWith(p, "UNAUTHORIZED")).message).toMatch(why);
      for (let i = 0; i < 3; i++)
        expect(await store.checkEnrollToken(tok.id, "good")).toMatchObject({
          id: tok.id,
          used: 0,
          tenant: "team-a",
        });
      await refused(store.checkEnrollToken(tok.id, "bad"), /unknown/);
      await refused(store.checkEnrollToken(newId(), "good"), /unknown/);
      await refused(store.checkEnrollToken("not-an-id", "good"), /unknown/);
      expect((await store.useEnrollToken(tok.id, "good")).used).toBe(1);
      await refused(store.checkEnrollToken(tok.id, "good"), /used up/);
      const timed = await store.createEnrollToken({ secretHash: "t", expiresAt: clock() + 1000 });
      clock.advance(1000);
      await refused(store.checkEnrollToken(timed.id, "t"), /expired/);
      const revoked = await store.createEnrollToken({ secretHash: "r" });
      await store.revokeEnrollToken(revoked.id);
      await refused(store.checkEnrollToken(revoked.id, "r"), /revoked/);
      await refused(store.checkEnrollToken(revoked.id, "bad"), /unknown/);
    });

    test("tokens - a single-use token used at once from two handles succeeds exactly once", async () => {
      const { store } = t;
      const other = await t.replica();
      for (let round = 0; round < 15; round++) {
        const tok = await store.createEnrollToken({ secretHash: `s${round}`, uses: 1 });
        const results = await Promise.allSettled([
          store.useEnrollToken(tok.id, `s${round}`),
          other.useEnrollToken(tok.id, `s${round}`),
          other.useEnrollToken(tok.id, `s${round}`),
        ]);
        expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
        for (const r of results)
          if (r.status === "rejected") {
            expect(r.reason.code).toBe("FLEETLINK_E_UNAUTHORIZED");
            expect(r.reason.message).toMatch(/used up/);
          }
        expect((await store.listEnrollTokens()).find((x) => x.id === tok.id)?.used).toBe(1);
      }
    });

    test("tokens - cleanup deletes revoked, expired and used-up tokens older than the cutoff", async () => {
      const { store, clock } = t;
      const live = await store.createEnrollToken({ secretHash: "l" });
      const expiring = await store.createEnrollToken({ secretHash: "e", expiresAt: clock() + 100 });
      const once = await store.createEnrollToken({ secretHash: "o", uses: 1 });
      const revoked = await store.createEnrollToken({ secretHash: "r" });
      await store.useEnrollToken(once.id, "o");
      await store.revokeEnrollToken(revoked.id);
      clock.advance(1000);
      const fresh = await store.createEnrollToken({ secretHash: "x", uses: 1 });
      await store.useEnrollToken(fresh.id, "x");
      expect(await store.cleanup(5000)).toMatchObject({ enrollTokens: 0 });
      expect(await store.cleanup(500)).toMatchObject({ enrollTokens: 3 });
      expect((await store.listEnrollTokens()).map((x) => x.id).sort()).toEqual([live.id, fresh.id].sort());
      expect(expiring.id).toBeDefined();
    });
  });
};
