import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { PostgresStore } from "../../src/store/postgres.ts";
import { SqliteStore } from "../../src/store/sqlite.ts";
import { type Store, storeReply } from "../../src/store/store.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { describePg, dropSchema, pgSchemaUrl } from "../helpers/postgres.ts";

const SKEW = 31_000;

/** A node with a session and one instruction (TTL 20 s), claimed by `a` with a 30 s lease. */
const leased = async (a: Store, b: Store) => {
  const run = await a.createRun();
  const n = await a.registerNode({ name: "n", heartbeatIntervalMs: 10_000 });
  await a.openSession({ nodeId: n.id, sessionId: "s1" });
  const [ins] = await b.pushInstructions(run.id, [{ dst: n.id, method: "m", ttlMs: 20_000 }]);
  const [got] = await a.claimInstructions({ sessions: [{ nodeId: n.id, sessionId: "s1" }], limit: 1 });
  expect(got!.id).toBe(ins!.id);
  return { run, n, ins: ins!, session: [{ nodeId: n.id, sessionId: "s1" }] };
};

describePg("clock: postgres", () => {
  test("clock - replicas on skewed hosts judge leases, TTLs and online windows by the database's clock", async () => {
    const { url, schema } = pgSchemaUrl("clock");
    const a = await PostgresStore.open(url, { leaseMs: 30_000 });
    const b = await PostgresStore.open(url, { leaseMs: 30_000, clockOffsetMs: SKEW });
    try {
      // b's host is 31 s ahead; the store's time is the database's on both.
      expect(b.options.clock() - Date.now()).toBeGreaterThanOrEqual(SKEW - 5);
      expect(Math.abs((await b.now()) - (await a.now()))).toBeLessThan(1000);
      const { run, n, ins, session } = await leased(a, b);
      const dbNow = await a.now();
      // Pushed through the skewed handle, the TTL still counts from the database's time.
      expect(ins.expiresAt - dbNow).toBeGreaterThan(18_000);
      expect(ins.expiresAt - dbNow).toBeLessThanOrEqual(20_000);
      // By b's own clock the lease, the TTL and the node's online window have all run out; by the database's not.
      expect(await b.claimInstructions({ sessions: session, limit: 1 })).toEqual([]);
      expect(await b.claimInstructions({ nodeIds: [n.id], limit: 1 })).toEqual([]);
      expect(await b.sweep()).toBe(0);
      expect((await b.getNode(n.id)).status).toBe("online");
      const hb = await b.heartbeat(n.id, undefined, "s1");
      expect(hb.onlineUntil! - (await a.now())).toBeLessThanOrEqual(20_000);
      expect((await storeReply(b, { runId: run.id, nodeId: n.id, replyTo: ins.id })).duplicate).toBe(false);
      // Enrollment tokens, too: one that expires in 10 s by the database is still usable through b.
      const token = await a.createEnrollToken({ secretHash: "h", expiresAt: (await a.now()) + 10_000 });
      expect((await b.useEnrollToken(token.id, "h")).used).toBe(1);
    } finally {
      await a.close();
      await b.close();
      await dropSchema(schema);
    }
  });

  test("clock - an injected clock is used as given on PostgreSQL", async () => {
    const { url, schema } = pgSchemaUrl("clock");
    const s = await PostgresStore.open(url, { clock: () => 1_000_000 });
    try {
      expect(await s.now()).toBe(1_000_000);
      expect((await s.createRun()).createdAt).toBe(1_000_000);
    } finally {
      await s.close();
      await dropSchema(schema);
    }
  });
});

test("clock - SQLite judges by the host's clock (one host): a skewed handle re-leases and expires", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-clock-"));
  const a = new SqliteStore(join(dir, "fleet.db"), { leaseMs: 30_000 });
  const b = new SqliteStore(join(dir, "fleet.db"), { leaseMs: 30_000, clockOffsetMs: SKEW });
  try {
    expect((await b.now()) - Date.now()).toBeGreaterThanOrEqual(SKEW - 5);
    const { run, n, ins } = await leased(a, b);
    expect(ins.expiresAt - Date.now()).toBeGreaterThan(SKEW);
    expect(await b.claimInstructions({ nodeIds: [n.id], limit: 1 })).toMatchObject([
      { id: ins.id, attempts: 2 },
    ]);
    await rejectsWith(
      (async () => {
        await b.sweep();
        return storeReply(a, { runId: run.id, nodeId: n.id, replyTo: ins.id });
      })(),
      "INSTRUCTION_ENDED", // the skewed sweep found the node past its online window
    );
  } finally {
    await a.close();
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
