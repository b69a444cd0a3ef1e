import { describe, expect, test } from "vitest";
import { newId } from "../../src/protocol/ids.ts";
import type { NewPrincipal } from "../../src/store/store.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { type StoreFactory, useStore } from "./factory.ts";

/** Principals: stored credentials of people and services, with a role and optionally a tenant. */
export const principalConformance = (factory: StoreFactory): void => {
  describe("principals", () => {
    const t = useStore(factory);

    const refused = async (p: Promise<unknown>, why: string) =>
      expect((await rejectsWith(p, "UNAUTHORIZED")).message).toBe(why);

    test("principals - create, list newest first (by exact tenant), revoke idempotently", async () => {
      const { store, clock } = t;
      const admin = await store.createPrincipal({ role: "admin", secretHash: "h-admin" });
      expect(admin).toEqual({
        id: admin.id,
        label: null,
        role: "admin",
        tenant: null,
        secretHash: "h-admin",
        createdAt: clock(),
        expiresAt: null,
        revokedAt: null,
      });
      clock.advance(1);
      const reader = await store.createPrincipal({
        role: "reader",
        tenant: "team-a",
        label: "dashboard",
        secretHash: "h-r",
        expiresAt: clock() + 60_000,
      });
      expect(reader).toMatchObject({
        role: "reader",
        tenant: "team-a",
        label: "dashboard",
        expiresAt: clock() + 60_000,
      });
      clock.advance(1);
      const coord = await store.createPrincipal({ role: "coordinator", tenant: "team-b", secretHash: "h-c" });
      const metrics = await store.createPrincipal({
        role: "metrics",
        tenant: null,
        label: null,
        secretHash: "h-m",
      });
      expect((await store.listPrincipals()).map((p) => p.id)).toEqual([
        metrics.id,
        coord.id,
        reader.id,
        admin.id,
      ]);
      expect((await store.listPrincipals({ tenant: "team-a" })).map((p) => p.id)).toEqual([reader.id]);
      expect(await store.listPrincipals({ tenant: "nobody" })).toEqual([]);

      clock.advance(5);
      const revoked = await store.revokePrincipal(reader.id);
      expect(revoked).toEqual({ ...reader, revokedAt: clock() });
      clock.advance(5);
      // Idempotent: a second revoke keeps the first time.
      expect(await store.revokePrincipal(reader.id)).toEqual(revoked);
      expect((await store.listPrincipals({ tenant: "team-a" }))[0]!.revokedAt).toBe(revoked.revokedAt);
      await rejectsWith(store.revokePrincipal(newId()), "TOKEN_NOT_FOUND", "id");
      await rejectsWith(store.revokePrincipal("nope"), "INVALID_ARGUMENT", "id");
    });

    test("principals - bad input is INVALID_ARGUMENT naming the field, and nothing is stored", async () => {
      const { store } = t;
      const ok: NewPrincipal = { role: "reader", secretHash: "h" };
      const cases: [Partial<Record<keyof NewPrincipal, unknown>>, string][] = [
        [{ role: "root" }, "role"],
        [{ role: undefined }, "role"],
        [{ role: "Admin" }, "role"],
        [{ tenant: "Team A" }, "tenant"],
        [{ tenant: "" }, "tenant"],
        [{ label: "" }, "label"],
        [{ label: "x".repeat(201) }, "label"],
        [{ secretHash: "" }, "secretHash"],
        [{ secretHash: 5 }, "secretHash"],
        [{ expiresAt: 1.5 }, "expiresAt"],
        [{ expiresAt: "soon" }, "expiresAt"],
      ];
      for (const [patch, field] of cases)
        await rejectsWith(
          store.createPrincipal({ ...ok, ...patch } as NewPrincipal),
          "INVALID_ARGUMENT",
          field,
        );
      await rejectsWith(store.listPrincipals({ tenant: "A" }), "INVALID_ARGUMENT", "tenant");
      expect(await store.listPrincipals()).toEqual([]);
    });

    test("principals - authenticate checks the secret, revocation and expiry (store clock); a wrong secret learns nothing", async () => {
      const { store, clock } = t;
      const p = await store.createPrincipal({
        role: "coordinator",
        tenant: "a",
        secretHash: "good",
        expiresAt: clock() + 1000,
      });
      expect(await store.authenticatePrincipal(p.id, "good")).toEqual(p);
      await refused(store.authenticatePrincipal(p.id, "bad"), "unknown token or wrong secret");
      await refused(store.authenticatePrincipal(newId(), "good"), "unknown token or wrong secret");
      await refused(store.authenticatePrincipal("not-an-id", "good"), "unknown token or wrong secret");
      await refused(
        store.authenticatePrincipal(p.id, undefined as unknown as string),
        "unknown token or wrong secret",
      );
      clock.advance(999);
      expect((await store.authenticatePrincipal(p.id, "good")).id).toBe(p.id);
      clock.advance(1);
      await refused(store.authenticatePrincipal(p.id, "good"), "token expired");
      await refused(store.authenticatePrincipal(p.id, "bad"), "unknown token or wrong secret");

      const q = await store.createPrincipal({ role: "reader", secretHash: "q" });
      clock.advance(365 * 24 * 3600_000);
      expect((await store.authenticatePrincipal(q.id, "q")).role).toBe("reader");
      await store.revokePrincipal(q.id);
      await refused(store.authenticatePrincipal(q.id, "q"), "token revoked");
      await refused(store.authenticatePrincipal(q.id, "x"), "unknown token or wrong secret");
    });

    test("principals - a revoke on one handle is refused at once on another (a second replica)", async () => {
      const { store } = t;
      const other = await t.replica();
      const p = await store.createPrincipal({ role: "admin", secretHash: "s" });
      expect((await other.authenticatePrincipal(p.id, "s")).id).toBe(p.id);
      await store.revokePrincipal(p.id);
      await refused(other.authenticatePrincipal(p.id, "s"), "token revoked");
      const q = await other.createPrincipal({ role: "reader", secretHash: "r" });
      expect((await store.listPrincipals()).map((x) => x.id)).toContain(q.id);
      await other.revokePrincipal(q.id);
      await refused(store.authenticatePrincipal(q.id, "r"), "token revoked");
    });

    test("principals - cleanup deletes revoked and expired principals older than the cutoff, keeps the audit log", async () => {
      const { store, clock } = t;
      const live = await store.createPrincipal({ role: "admin", secretHash: "l" });
      const later = await store.createPrincipal({
        role: "reader",
        secretHash: "x",
        expiresAt: clock() + 100_000,
      });
      const expiring = await store.createPrincipal({
        role: "reader",
        secretHash: "e",
        expiresAt: clock() + 100,
      });
      const revoked = await store.createPrincipal({ role: "metrics", secretHash: "r" });
      await store.revokePrincipal(revoked.id);
      await store.appendAudit([
        {
          principal: live.id,
          role: "admin",
          tenant: null,
          address: null,
          action: "token.revoke",
          target: revoked.id,
          outcome: "ok",
          detail: null,
        },
      ]);
      clock.advance(1000);
      const fresh = await store.createPrincipal({ role: "reader", secretHash: "f" });
      await store.revokePrincipal(fresh.id);
      expect(await store.cleanup(5000)).toMatchObject({ principals: 0 });
      expect(await store.cleanup(500)).toMatchObject({ principals: 2 });
      expect((await store.listPrincipals()).map((x) => x.id).sort()).toEqual(
        [live.id, later.id, fresh.id].sort(),
      );
      await refused(store.authenticatePrincipal(expiring.id, "e"), "unknown token or wrong secret");
      clock.advance(10 * 365 * 24 * 3600_000);
      await store.cleanup(0);
      expect((await store.listAudit()).entries).toHaveLength(1);
    });
  });
};
