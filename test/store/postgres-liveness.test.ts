import net from "node:net";
import pg from "pg";
import { afterAll, afterEach, beforeAll, expect, test } from "vitest";
import { isFleetlinkError } from "../../src/protocol/errors.ts";
import { PostgresStore } from "../../src/store/postgres.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { describePg, dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";
import { startProxy } from "../helpers/proxy.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The store URL, with its host and port replaced by a proxy's. */
const via = (url: string, port: number): string => {
  const u = new URL(url);
  u.hostname = "127.0.0.1";
  u.port = String(port);
  return u.toString();
};

/** A TCP proxy whose open connections can be frozen (half-open: nothing passes, nothing closes) while new ones pass. */
const startFreezer = async (target: URL) => {
  const conns = new Set<{ frozen: boolean; a: net.Socket; b: net.Socket }>();
  const server = net.createServer((a) => {
    const b = net.connect(Number(target.port || 5432), target.hostname);
    const c = { frozen: false, a, b };
    conns.add(c);
    a.on("data", (d) => !c.frozen && b.write(d));
    b.on("data", (d) => !c.frozen && a.write(d));
    const end = () => {
      conns.delete(c);
      a.destroy();
      b.destroy();
    };
    for (const s of [a, b]) {
      s.on("close", end);
      s.on("error", end);
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    freezeAll: () => {
      for (const c of conns) c.frozen = true;
    },
    close: async () => {
      for (const c of conns) c.a.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
};

/** The store's pool, to read its connections' settings. */
const poolOf = (s: PostgresStore): pg.Pool => (s as unknown as { pool: pg.Pool }).pool;

/** How long `p` took to settle, and how. */
const timed = async <T>(p: Promise<T>) => {
  const t0 = performance.now();
  const [r] = await Promise.allSettled([p]);
  return { ms: performance.now() - t0, result: r! };
};
const reason = (r: PromiseSettledResult<unknown>) => (r.status === "rejected" ? r.reason : r.value);

describePg("postgres liveness", () => {
  let schema: string;
  let url: string;
  const stores: PostgresStore[] = [];
  const open = async (u: string, o: Parameters<typeof PostgresStore.open>[1] = {}) => {
    const s = await PostgresStore.open(u, o);
    stores.push(s);
    return s;
  };
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    ({ url, schema } = pgSchemaUrl("liveness"));
    await open(url);
  });
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });
  afterAll(async () => {
    for (const s of stores) await s.close().catch(() => {});
    await dropSchema(schema);
  });

  test("liveness - every connection carries the statement, idle-in-transaction and client timeouts", async () => {
    const s = await open(url, { statementTimeoutMs: 1234, idleInTransactionTimeoutMs: 2345 });
    const pool = poolOf(s);
    const [a] = (await pool.query("SHOW statement_timeout")).rows;
    const [b] = (await pool.query("SHOW idle_in_transaction_session_timeout")).rows;
    expect([a.statement_timeout, b.idle_in_transaction_session_timeout]).toEqual(["1234ms", "2345ms"]);
    const defaults = poolOf(await open(url));
    expect((await defaults.query("SHOW statement_timeout")).rows[0].statement_timeout).toBe("4s");
    expect(defaults.options).toMatchObject({ connectionTimeoutMillis: 5000, query_timeout: 5000 });
  });

  test("liveness - a database that never answers fails opening with STORE_UNAVAILABLE within connectTimeoutMs", async () => {
    const proxy = await startProxy({ host: "127.0.0.1", port: Number(new URL(PG_URL!).port || 5432) });
    closers.push(() => proxy.close());
    proxy.set("blackhole");
    const { ms, result } = await timed(
      PostgresStore.open(via(url, Number(new URL(proxy.url).port)), { connectTimeoutMs: 400 }),
    );
    expect(result.status).toBe("rejected");
    expect(isFleetlinkError(reason(result), "STORE_UNAVAILABLE")).toBe(true);
    expect(ms).toBeLessThan(1500);
  });

  test("liveness - a statement blocked past statementTimeoutMs fails with STORE_UNAVAILABLE, and the store goes on", async () => {
    const s = await open(url, { statementTimeoutMs: 300 });
    const run = await s.createRun();
    const node = await s.registerNode({ name: "blocked", heartbeatIntervalMs: 60_000 });
    await s.openSession({ nodeId: node.id, sessionId: "s1" });
    const admin = new pg.Client({ connectionString: url.replace(/\?.*$/, "") });
    await admin.connect();
    closers.push(() => admin.end());
    await admin.query("BEGIN");
    await admin.query(`SELECT 1 FROM "${schema}".runs WHERE id = $1 FOR UPDATE`, [run.id]);
    await admin.query(`SELECT 1 FROM "${schema}".nodes WHERE id = $1 FOR UPDATE`, [node.id]);
    // A transaction and a single pooled statement (a claim by session waits for the node's row).
    const ops: (() => Promise<unknown>)[] = [
      () => s.transitionRun(run.id, "pending", "running"),
      () => s.claimInstructions({ sessions: [{ nodeId: node.id, sessionId: "s1" }], limit: 1 }),
    ];
    for (const op of ops) {
      const { ms, result } = await timed(op());
      expect(isFleetlinkError(reason(result), "STORE_UNAVAILABLE"), String(reason(result))).toBe(true);
      expect(ms).toBeLessThan(1500);
    }
    await admin.query("ROLLBACK");
    expect((await s.transitionRun(run.id, "pending", "running")).status).toBe("running");
  });

  test("liveness - a connection that goes silent mid-query fails with STORE_UNAVAILABLE within queryTimeoutMs", async () => {
    const proxy = await startProxy({ host: "127.0.0.1", port: Number(new URL(PG_URL!).port || 5432) });
    closers.push(() => proxy.close());
    const s = await open(via(url, Number(new URL(proxy.url).port)), {
      queryTimeoutMs: 400,
      connectTimeoutMs: 400,
    });
    const run = await s.createRun();
    proxy.set("blackhole");
    const ops: (() => Promise<unknown>)[] = [
      () => s.getRun(run.id),
      () => s.transitionRun(run.id, "pending", "running"),
    ];
    for (const op of ops) {
      const { ms, result } = await timed(op());
      expect(isFleetlinkError(reason(result), "STORE_UNAVAILABLE"), String(reason(result))).toBe(true);
      expect(ms).toBeLessThan(1500);
    }
    proxy.set("pass");
    const t0 = Date.now();
    while (true) {
      try {
        await s.transitionRun(run.id, "pending", "running");
        break;
      } catch (e) {
        await rejectsWith(Promise.reject(e), "STORE_UNAVAILABLE");
        if (Date.now() - t0 > 3000) throw e;
      }
    }
    expect((await s.getRun(run.id)).status).toBe("running");
  });

  test("liveness - a half-open LISTEN connection is noticed by its probe and replaced", async () => {
    const freezer = await startFreezer(new URL(PG_URL!));
    closers.push(() => freezer.close());
    const watched = await open(via(url, freezer.port), { listenProbeMs: 200 });
    const writer = stores[0]!;
    const run = await writer.createRun();
    const node = await writer.registerNode({ name: "w", heartbeatIntervalMs: 60_000 });
    let remote = 0;
    const stop = watched.watch((source) => {
      if (source === "remote") remote++;
    });
    closers.push(async () => stop());
    const heard = async (withinMs: number) => {
      remote = 0;
      await writer.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: 60_000 }]);
      const until = Date.now() + withinMs;
      while (remote === 0 && Date.now() < until) await sleep(10);
      return remote > 0;
    };
    await sleep(300);
    expect(await heard(2000)).toBe(true);
    // Probes go on quietly: no wake-ups without changes.
    remote = 0;
    await sleep(700);
    expect(remote).toBe(0);
    freezer.freezeAll();
    await sleep(1000);
    expect(await heard(1500)).toBe(true);
  });
});
