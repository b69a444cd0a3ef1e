import { describe, expect, test } from "vitest";
import { MAX_AUDIT_DETAIL_BYTES, type NewAuditEntry } from "../../src/store/store.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { type StoreFactory, useStore } from "./factory.ts";

const entry = (over: Partial<NewAuditEntry> = {}): NewAuditEntry => ({
  principal: "admin-token",
  role: "admin",
  tenant: null,
  address: "127.0.0.1",
  action: "run.create",
  target: null,
  outcome: "ok",
  detail: null,
  ...over,
});

/** The audit log: appended in batches, read newest first, filtered and paginated, bounded. */
export const auditConformance = (factory: StoreFactory): void => {
  describe("audit", () => {
    const t = useStore(factory);

    test("audit - entries are appended in order with the store's time and read back newest first", async () => {
      const { store, clock } = t;
      expect(await store.listAudit()).toEqual({ entries: [], nextBeforeSeq: null });
      await store.appendAudit([]);
      const first = entry({
        principal: "node:abc",
        role: "node",
        tenant: "team-a",
        action: "node.enroll",
        target: "abc",
        detail: { name: "n1", nested: { list: [1, "two", null], ok: true } },
      });
      await store.appendAudit([first, entry({ outcome: "refused", address: null })]);
      clock.advance(10);
      await store.appendAudit([entry({ action: "token.create", target: "t1" })]);
      // Nullable fields left out are stored as null.
      await store.appendAudit([
        { principal: "p", role: "reader", action: "run.list", outcome: "ok" } as unknown as NewAuditEntry,
      ]);
      expect((await store.listAudit({ action: "run.list" })).entries[0]).toMatchObject({
        tenant: null,
        address: null,
        target: null,
        detail: null,
      });
      const { entries, nextBeforeSeq } = await store.listAudit({
        beforeSeq: (await store.listAudit()).entries[0]!.seq,
      });
      expect(nextBeforeSeq).toBeNull();
      expect(entries.map((e) => e.action)).toEqual(["token.create", "run.create", "node.enroll"]);
      const seqs = entries.map((e) => e.seq);
      expect(seqs[0]! > seqs[1]! && seqs[1]! > seqs[2]!).toBe(true);
      expect(entries[2]).toEqual({ ...first, seq: seqs[2], at: clock() - 10 });
      expect(entries[1]).toMatchObject({ outcome: "refused", address: null, at: clock() - 10 });
      expect(entries[0]).toMatchObject({ target: "t1", at: clock() });
    });

    test("audit - paginated with beforeSeq / nextBeforeSeq; afterSeq, tenant, action and principal filter", async () => {
      const { store } = t;
      const other = await t.replica();
      const batch: NewAuditEntry[] = [];
      for (let i = 0; i < 25; i++)
        batch.push(
          entry({
            principal: i % 5 === 0 ? "p-five" : "p-other",
            tenant: i % 2 === 0 ? "even" : "odd",
            action: i % 3 === 0 ? "run.status" : "run.create",
            target: `r${i}`,
          }),
        );
      await store.appendAudit(batch.slice(0, 10));
      await other.appendAudit(batch.slice(10));
      const targets: string[] = [];
      let before: number | undefined;
      let pages = 0;
      for (;;) {
        const page = await store.listAudit({ limit: 7, beforeSeq: before });
        targets.push(...page.entries.map((e) => e.target!));
        pages++;
        if (page.nextBeforeSeq === null) break;
        expect(page.entries).toHaveLength(7);
        before = page.nextBeforeSeq;
      }
      expect(pages).toBe(4);
      expect(targets).toEqual(Array.from({ length: 25 }, (_, i) => `r${24 - i}`));
      // A page ending exactly at the last entry says so.
      const all = await store.listAudit({ limit: 25 });
      expect(all.nextBeforeSeq).toBeNull();
      const seqOf = new Map(all.entries.map((e) => [e.target!, e.seq]));

      const even = await store.listAudit({ tenant: "even", limit: 1000 });
      expect(even.entries.map((e) => e.target)).toEqual(
        Array.from({ length: 13 }, (_, i) => `r${24 - 2 * i}`),
      );
      expect((await store.listAudit({ action: "run.status" })).entries).toHaveLength(9);
      expect((await store.listAudit({ principal: "p-five" })).entries.map((e) => e.target)).toEqual([
        "r20",
        "r15",
        "r10",
        "r5",
        "r0",
      ]);
      expect(
        (await store.listAudit({ principal: "p-five", tenant: "even", action: "run.status" })).entries.map(
          (e) => e.target,
        ),
      ).toEqual(["r0"]);
      const after = await store.listAudit({ afterSeq: seqOf.get("r21")! });
      expect(after.entries.map((e) => e.target)).toEqual(["r24", "r23", "r22"]);
      const window = await store.listAudit({
        afterSeq: seqOf.get("r3")!,
        beforeSeq: seqOf.get("r9")!,
        limit: 2,
      });
      expect(window.entries.map((e) => e.target)).toEqual(["r8", "r7"]);
      expect(window.nextBeforeSeq).toBe(seqOf.get("r7"));
      expect((await store.listAudit({ tenant: "none" })).entries).toEqual([]);
    });

    test("audit - bounds: limit 1..1000, at most 1000 entries a call, detail at most 4 KiB; a bad entry appends nothing", async () => {
      const { store } = t;
      for (const limit of [0, -1, 1.5, 1001])
        await rejectsWith(store.listAudit({ limit }), "INVALID_ARGUMENT", "limit");
      await rejectsWith(store.listAudit({ beforeSeq: -1 }), "INVALID_ARGUMENT", "beforeSeq");
      await rejectsWith(store.listAudit({ afterSeq: 0.5 }), "INVALID_ARGUMENT", "afterSeq");
      await rejectsWith(store.listAudit({ tenant: "Bad Tenant" }), "INVALID_ARGUMENT", "tenant");
      await rejectsWith(store.listAudit({ action: "" }), "INVALID_ARGUMENT", "action");

      // The largest detail that fits, and one byte more (a multi-byte character counts its bytes).
      const pad = (n: number) => ({ s: "x".repeat(n - 8) }); // {"s":""} is 8 bytes
      await store.appendAudit([entry({ detail: pad(MAX_AUDIT_DETAIL_BYTES) })]);
      const tooBig = [entry(), entry({ detail: pad(MAX_AUDIT_DETAIL_BYTES + 1) })];
      await rejectsWith(store.appendAudit(tooBig), "INVALID_ARGUMENT", "entries[1].detail");
      await rejectsWith(
        store.appendAudit([entry({ detail: { s: "é".repeat(MAX_AUDIT_DETAIL_BYTES / 2) } })]),
        "INVALID_ARGUMENT",
        "entries[0].detail",
      );
      const cases: [Partial<Record<keyof NewAuditEntry, unknown>>, string][] = [
        [{ principal: "" }, "principal"],
        [{ role: 3 }, "role"],
        [{ tenant: "A" }, "tenant"],
        [{ address: "" }, "address"],
        [{ action: "" }, "action"],
        [{ target: 5 }, "target"],
        [{ outcome: "maybe" }, "outcome"],
        [{ detail: [1, 2] }, "detail"],
        [{ detail: "text" }, "detail"],
      ];
      for (const [patch, field] of cases)
        await rejectsWith(
          store.appendAudit([entry(), { ...entry(), ...patch } as NewAuditEntry]),
          "INVALID_ARGUMENT",
          `entries[1].${field}`,
        );
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      await rejectsWith(
        store.appendAudit([entry({ detail: cyclic })]),
        "INVALID_ARGUMENT",
        "entries[0].detail",
      );
      await rejectsWith(
        store.appendAudit(Array.from({ length: 1001 }, () => entry())),
        "INVALID_ARGUMENT",
        "entries",
      );
      expect((await store.listAudit()).entries).toHaveLength(1);

      await store.appendAudit(Array.from({ length: 1000 }, (_, i) => entry({ target: `t${i}` })));
      const page = await store.listAudit({ limit: 1000 });
      expect(page.entries).toHaveLength(1000);
      expect(page.entries[0]!.target).toBe("t999");
      expect(page.nextBeforeSeq).toBe(page.entries[999]!.seq);
      expect((await store.listAudit({ beforeSeq: page.nextBeforeSeq! })).entries).toHaveLength(1);
    });
  });
};
