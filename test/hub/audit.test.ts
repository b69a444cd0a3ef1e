// The audit log: the recorder (src/hub/audit.ts) over real stores, and GET /v1/audit on a real hub, on SQLite and
// PostgreSQL (FLEETLINK_TEST_POSTGRES_URL; under CI=true the global setup fails loudly without it).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { Audit, type AuditActor } from "../../src/hub/audit.ts";
import { openStore } from "../../src/store/open.ts";
import type { NewAuditEntry, Store } from "../../src/store/store.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";
import { dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";

/** A pino logger whose lines are kept, parsed. */
const capture = () => {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split("\n")) if (l.trim()) lines.push(JSON.parse(l));
      done();
    },
  });
  return { log: pino({ level: "info" }, stream), lines };
};

const actor = (over: Partial<AuditActor> = {}): AuditActor => ({
  id: "admin-token",
  role: "admin",
  tenant: null,
  address: "10.0.0.1",
  ...over,
});

type Backend = { name: string; open(): Promise<{ url: string; cleanup(): Promise<void> }> };
const backends: Backend[] = [
  {
    name: "sqlite",
    async open() {
      const dir = mkdtempSync(join(tmpdir(), "fleetlink-audit-"));
      return {
        url: `sqlite:${join(dir, "fleet.db")}`,
        cleanup: async () => rmSync(dir, { recursive: true }),
      };
    },
  },
  ...(PG_URL
    ? [
        {
          name: "postgres",
          async open() {
            const { url, schema } = pgSchemaUrl("audit");
            return { url, cleanup: () => dropSchema(schema) };
          },
        },
      ]
    : []),
];

for (const b of backends) {
  describe(`audit recorder on ${b.name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    const cleanups: (() => Promise<unknown>)[] = [];
    beforeAll(async () => {
      const made = await b.open();
      cleanup = made.cleanup;
      store = await openStore(made.url);
    });
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });
    afterAll(async () => {
      await store?.close();
      await cleanup?.();
    });

    /** The store, with its appends counted and optionally held or failed. */
    const watched = () => {
      const batches: number[] = [];
      let gate: Promise<void> | null = null;
      let fail = 0;
      const w = {
        batches,
        hold() {
          let open = () => {};
          gate = new Promise<void>((r) => {
            open = r;
          });
          return () => {
            gate = null;
            open();
          };
        },
        failNext(n: number) {
          fail = n;
        },
        async appendAudit(entries: readonly NewAuditEntry[]) {
          batches.push(entries.length);
          if (gate) await gate;
          if (fail > 0) {
            fail--;
            throw new Error("injected: store down");
          }
          return store.appendAudit(entries);
        },
      };
      return w;
    };
    const mine = async (principal: string) =>
      (await store.listAudit({ principal, limit: 1000 })).entries.reverse();

    test("recorder - entries that arrive during a write go together in the next append", async () => {
      const w = watched();
      const { log, lines } = capture();
      const audit = new Audit({ store: w, log });
      cleanups.push(() => audit.close());
      const release = w.hold();
      const p = actor({ id: "batcher" });
      audit.record(p, "run.create", "r0", "ok");
      // The first append is under way (held): the next 50 wait and go in one statement.
      for (let i = 1; i <= 50; i++) audit.record(p, "run.create", `r${i}`, "ok", { i });
      expect(audit.pending).toBe(50);
      release();
      await audit.flush();
      expect(w.batches).toEqual([1, 50]);
      const stored = await mine("batcher");
      expect(stored.map((e) => e.target)).toEqual(Array.from({ length: 51 }, (_, i) => `r${i}`));
      expect(stored[1]).toMatchObject({
        principal: "batcher",
        role: "admin",
        tenant: null,
        address: "10.0.0.1",
        action: "run.create",
        outcome: "ok",
        detail: { i: 1 },
      });
      // One info line per entry, at once (not when stored).
      const auditLines = lines.filter((l) => l.msg === "audit");
      expect(auditLines).toHaveLength(51);
      expect(auditLines[0]).toMatchObject({
        level: 30,
        audit: {
          principal: "batcher",
          role: "admin",
          tenant: null,
          address: "10.0.0.1",
          action: "run.create",
          target: "r0",
          outcome: "ok",
        },
      });
    });

    test("recorder - record never waits or throws; a store failure is logged and later entries are stored", async () => {
      const w = watched();
      const { log, lines } = capture();
      const audit = new Audit({ store: w, log });
      cleanups.push(() => audit.close());
      w.failNext(1);
      const p = actor({ id: "failing" });
      const t0 = performance.now();
      expect(() => audit.record(p, "node.approve", "lost", "ok")).not.toThrow();
      expect(performance.now() - t0).toBeLessThan(50);
      await audit.flush();
      expect(lines.some((l) => l.msg === "audit entries not stored")).toBe(true);
      audit.record(p, "node.approve", "kept", "ok");
      await audit.flush();
      expect((await mine("failing")).map((e) => e.target)).toEqual(["kept"]);
    });

    test("recorder - the queue is bounded while the store is stalled", async () => {
      const w = watched();
      const { log, lines } = capture();
      const audit = new Audit({ store: w, log, maxQueue: 10 });
      cleanups.push(() => audit.close());
      const release = w.hold();
      const p = actor({ id: "flooder" });
      for (let i = 0; i < 1000; i++) audit.record(p, "run.create", `r${i}`, "ok");
      // One entry in the held write, at most 10 queued.
      expect(audit.pending).toBe(10);
      expect(lines.filter((l) => String(l.msg).startsWith("audit queue full"))).toHaveLength(1);
      release();
      await audit.flush();
      expect(await mine("flooder")).toHaveLength(11);
      expect(lines.some((l) => l.msg === "audit entries dropped (queue full)" && l.dropped === 989)).toBe(
        true,
      );
    });

    test("recorder - refused entries are limited per address; ok entries are not", async () => {
      const { log, lines } = capture();
      const audit = new Audit({ store, log, refusedPerAddress: 5, refusedWindowMs: 60_000 });
      cleanups.push(() => audit.close());
      const flood = actor({ id: "prober", role: "reader", address: "10.9.9.9" });
      const other = actor({ id: "prober", role: "reader", address: "10.9.9.8" });
      for (let i = 0; i < 500; i++) audit.record(flood, "node.approve", null, "refused");
      for (let i = 0; i < 3; i++) audit.record(other, "node.approve", null, "refused");
      for (let i = 0; i < 30; i++) audit.record(flood, "run.create", `r${i}`, "ok");
      await audit.flush();
      const stored = await mine("prober");
      const refused = stored.filter((e) => e.outcome === "refused");
      expect(refused.filter((e) => e.address === "10.9.9.9")).toHaveLength(5);
      expect(refused.filter((e) => e.address === "10.9.9.8")).toHaveLength(3);
      expect(stored.filter((e) => e.outcome === "ok")).toHaveLength(30);
      // The log is spared too: 5 + 3 + 30 lines and one warning, not 500.
      expect(lines.filter((l) => l.msg === "audit")).toHaveLength(38);
      expect(lines.filter((l) => String(l.msg).includes("too many refused"))).toHaveLength(1);
    });

    test("recorder - an oversized detail, a long target or an odd tenant cannot fail a batch", async () => {
      const { log } = capture();
      const audit = new Audit({ store, log });
      cleanups.push(() => audit.close());
      const p = actor({ id: "odd", address: "" });
      audit.record(p, "checkpoint.push", "t".repeat(5000), "ok", { blob: "x".repeat(10_000) });
      audit.record({ ...p, tenant: "Not A Tenant!" }, "run.create", "", "ok");
      audit.record(p, "run.create", "fine", "ok", { n: 1 });
      await audit.flush();
      const [big, odd, fine] = await mine("odd");
      expect(big!.target).toHaveLength(500);
      expect(big!.detail).toEqual({ truncated: true, bytes: expect.any(Number) });
      expect(big!.address).toBeNull();
      expect(odd).toMatchObject({ tenant: null, target: null });
      expect(fine).toMatchObject({ target: "fine", detail: { n: 1 } });
    });

    test("recorder - close writes what is queued and takes nothing more", async () => {
      const w = watched();
      const { log } = capture();
      const audit = new Audit({ store: w, log });
      const release = w.hold();
      const p = actor({ id: "closer" });
      audit.record(p, "run.create", "a", "ok");
      audit.record(p, "run.create", "b", "ok");
      const closing = audit.close();
      audit.record(p, "run.create", "after-close", "ok");
      release();
      await closing;
      expect((await mine("closer")).map((e) => e.target)).toEqual(["a", "b"]);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Through a real hub: actions produce entries; GET /v1/audit pages, filters and is scoped by tenant.

interface Inject {
  statusCode: number;
  json(): unknown;
}
type Body = Record<string, unknown>;

for (const b of backends) {
  describe(`GET /v1/audit on a hub over ${b.name}`, () => {
    let f: TestFleet;
    let cleanup: () => Promise<void>;
    const { log, lines } = capture();

    beforeAll(async () => {
      const made = await b.open();
      cleanup = made.cleanup;
      f = await startFleet({ storeUrl: made.url, logger: log, enrollApproval: "manual" });
    });
    afterAll(async () => {
      await f?.close();
      await cleanup?.();
    });

    const call = async (token: string, method: string, url: string, body?: unknown): Promise<Inject> =>
      (await f.hub.app.inject({
        method: method as "GET",
        url,
        headers: { authorization: `Bearer ${token}` },
        ...(body === undefined ? {} : { payload: body as Body }),
      })) as unknown as Inject;
    const makeToken = async (as: string, body: Body) => {
      const res = await call(as, "POST", "/v1/tokens", body);
      expect(res.statusCode, JSON.stringify(res.json())).toBe(201);
      return res.json() as { token: { id: string }; secret: string };
    };
    type Page = { entries: { seq: number; action: string; principal: string; tenant: string | null }[] };
    /** Entries are written in the background: wait until `pred` holds for a page. */
    const until = async (as: string, query: string, pred: (p: Page & { next: number | null }) => boolean) => {
      let page: Page & { next: number | null } = { entries: [], next: null };
      await expect
        .poll(
          async () => {
            const res = await call(as, "GET", `/v1/audit${query}`);
            expect(res.statusCode, JSON.stringify(res.json())).toBe(200);
            page = res.json() as typeof page;
            return pred(page);
          },
          { timeout: 5000 },
        )
        .toBe(true);
      return page;
    };

    let adminA: { token: { id: string }; secret: string };
    let adminB: { token: { id: string }; secret: string };
    let readerA: { token: { id: string }; secret: string };

    test("audit - token, run and approval actions are recorded with principal, role, tenant and address", async () => {
      adminA = await makeToken(TOKEN, { role: "admin", tenant: "team-a", label: "a's admin" });
      adminB = await makeToken(TOKEN, { role: "admin", tenant: "team-b" });
      readerA = await makeToken(adminA.secret, { role: "reader", label: "a's reader" });
      const run = await call(adminA.secret, "POST", "/v1/runs", {});
      expect(run.statusCode).toBe(201);
      const runId = (run.json() as { run: { id: string } }).run.id;

      const page = await until(TOKEN, "?limit=1000", (p) => p.entries.some((e) => e.action === "run.create"));
      const byAction = (a: string) => page.entries.filter((e) => e.action === a);
      expect(byAction("token.create")).toHaveLength(3);
      // Newest first.
      const seqs = page.entries.map((e) => e.seq);
      expect(seqs).toEqual([...seqs].sort((x, y) => y - x));
      expect(byAction("run.create")[0]).toMatchObject({
        principal: adminA.token.id,
        role: "admin",
        tenant: "team-a",
        address: "127.0.0.1",
        target: runId,
        outcome: "ok",
      });
      // The unscoped admin token acted on a token of team-a: the entry is team-a's (its admins see it).
      expect(byAction("token.create").at(-1)).toMatchObject({
        principal: "admin-token",
        role: "admin",
        tenant: "team-a",
        target: adminA.token.id,
        outcome: "ok",
        at: expect.any(Number),
      });
      // And the same as log lines.
      expect(
        lines.some(
          (l) =>
            l.msg === "audit" &&
            (l.audit as Body).action === "run.create" &&
            (l.audit as Body).principal === adminA.token.id &&
            (l.audit as Body).tenant === "team-a",
        ),
      ).toBe(true);
    });

    test("audit - a refused action is recorded as refused, and only admins may read the log (403 naming the role)", async () => {
      const node = await call(TOKEN, "GET", "/v1/nodes");
      expect(node.statusCode).toBe(200);
      const denied = await call(readerA.secret, "POST", "/v1/runs", {});
      expect(denied.statusCode).toBe(403);
      const read = await call(readerA.secret, "GET", "/v1/audit");
      expect(read.statusCode).toBe(403);
      expect((read.json() as { error: { message: string } }).error.message).toMatch(/needs role admin/);
      const page = await until(TOKEN, "?limit=1000", (p) =>
        p.entries.some((e) => e.principal === readerA.token.id),
      );
      const refused = page.entries.filter((e) => e.principal === readerA.token.id);
      expect(refused.length).toBeGreaterThan(0);
      expect(refused[0]).toMatchObject({ role: "reader", tenant: "team-a", outcome: "refused" });
      // Reads are not audited.
      expect(page.entries.some((e) => e.action.startsWith("GET"))).toBe(false);
    });

    test("audit - a tenant's admin sees only its tenant's entries; filters by action and principal", async () => {
      await call(adminB.secret, "POST", "/v1/runs", {});
      await until(TOKEN, "?action=run.create", (p) => p.entries.some((e) => e.tenant === "team-b"));
      const a = (await call(adminA.secret, "GET", "/v1/audit?limit=1000")).json() as Page;
      expect(a.entries.length).toBeGreaterThan(0);
      expect(new Set(a.entries.map((e) => e.tenant))).toEqual(new Set(["team-a"]));
      const bb = (await call(adminB.secret, "GET", "/v1/audit?limit=1000")).json() as Page;
      expect(new Set(bb.entries.map((e) => e.tenant))).toEqual(new Set(["team-b"]));
      // Unscoped: both, and the static token's own entries (tenant null).
      const all = (await call(TOKEN, "GET", "/v1/audit?action=run.create&limit=1000")).json() as Page;
      expect(new Set(all.entries.map((e) => e.tenant))).toEqual(new Set(["team-a", "team-b"]));
      expect(all.entries.every((e) => e.action === "run.create")).toBe(true);
      const byAdminA = (await call(TOKEN, "GET", `/v1/audit?principal=${adminA.token.id}`)).json() as Page;
      expect(byAdminA.entries.length).toBeGreaterThan(0);
      expect(byAdminA.entries.every((e) => e.principal === adminA.token.id)).toBe(true);
    });

    test("audit - pages with limit and before cover every entry once, newest first", async () => {
      for (let i = 0; i < 7; i++) expect((await call(TOKEN, "POST", "/v1/runs", {})).statusCode).toBe(201);
      const full = await until(
        TOKEN,
        "?limit=1000",
        (p) => p.entries.filter((e) => e.action === "run.create").length >= 9,
      );
      const seen: number[] = [];
      let before: number | null = null;
      for (let pages = 0; pages < 100; pages++) {
        const res = await call(
          TOKEN,
          "GET",
          `/v1/audit?limit=3${before === null ? "" : `&before=${before}`}`,
        );
        const page = res.json() as Page & { next: number | null };
        expect(page.entries.length).toBeLessThanOrEqual(3);
        seen.push(...page.entries.map((e) => e.seq));
        if (page.next === null) break;
        before = page.next;
      }
      expect(seen).toEqual(full.entries.map((e) => e.seq));
    });

    test("audit - bad queries are refused naming the field", async () => {
      for (const [q, field] of [
        ["limit=0", "querystring.limit"],
        ["limit=1001", "querystring.limit"],
        ["limit=abc", "querystring.limit"],
        ["before=-1", "querystring.before"],
        ["nope=1", "querystring.nope"],
      ] as const) {
        const res = await call(TOKEN, "GET", `/v1/audit?${q}`);
        expect(res.statusCode, q).toBe(400);
        expect((res.json() as { error: { field: string } }).error.field, q).toBe(field);
      }
    });

    test("whoami - says who a token is; metrics and wrong tokens may not ask", async () => {
      const me = (await call(readerA.secret, "GET", "/v1/whoami")).json();
      expect(me).toEqual({
        principal: { id: readerA.token.id, label: "a's reader", role: "reader", tenant: "team-a" },
      });
      expect((await call(TOKEN, "GET", "/v1/whoami")).json()).toMatchObject({
        principal: { id: "admin-token", role: "admin", tenant: null },
      });
      const metrics = await makeToken(TOKEN, { role: "metrics" });
      expect((await call(metrics.secret, "GET", "/v1/whoami")).statusCode).toBe(403);
      expect((await call("wrong", "GET", "/v1/whoami")).statusCode).toBe(401);
    });
  });
}
