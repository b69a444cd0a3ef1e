// PostgreSQL partitioned away (every byte to and from it dropped): the hub's requests fail typed within the
// operator's bound (--store-timeout), /readyz says so within 2 s, and once the network heals the pool is healthy.

import pg from "pg";
import { afterAll, expect, test } from "vitest";
import { openStore } from "../../src/store/open.ts";
import { PostgresStore } from "../../src/store/postgres.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { describePg, dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";
import { type Proc, startHubProc } from "../helpers/procs.ts";
import { startProxy } from "../helpers/proxy.ts";

const TOKEN = "pg-partition-token";
const STORE_TIMEOUT_MS = 1500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The store URL, with its host and port replaced by the proxy's. */
const via = (url: string, port: number): string => {
  const u = new URL(url);
  u.hostname = "127.0.0.1";
  u.port = String(port);
  return u.toString();
};

describePg("hub on PostgreSQL behind a blackhole", () => {
  const made = pgSchemaUrl("partition");
  let hub: Proc | undefined;
  let proxy: Awaited<ReturnType<typeof startProxy>> | undefined;
  const procs: Proc[] = [];
  const proxies: Awaited<ReturnType<typeof startProxy>>[] = [];
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill("SIGKILL")));
    for (const p of proxies) await p.close();
    await dropSchema(made.schema);
  });

  /** A hub on the test schema whose every connection to PostgreSQL goes through a fresh proxy. */
  const hubBehindProxy = async (extra: string[]) => {
    const pgUrl = new URL(PG_URL!);
    proxy = await startProxy({ host: pgUrl.hostname, port: Number(pgUrl.port || 5432) });
    proxies.push(proxy);
    hub = await startHubProc(via(made.url, Number(new URL(proxy.url).port)), TOKEN, extra);
    procs.push(hub);
    return { hub, proxy };
  };

  /** One request: its status, its error code if any, and how long it took. */
  const timed = async (path: string, method = "GET") => {
    const t0 = performance.now();
    const res = await fetch(`${hub!.value}${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}` },
      signal: AbortSignal.timeout(30_000),
    });
    const body = (await res.json()) as {
      error?: { code?: string } | string;
      code?: string;
      run?: { id: string };
    };
    const code = typeof body.error === "object" ? body.error.code : body.code;
    return { status: res.status, code, run: body.run?.id, ms: performance.now() - t0 };
  };

  test("partition - POST /v1/runs answers 503 STORE_UNAVAILABLE within --store-timeout + 1 s, /readyz 503 within 2 s, and both recover after healing", async () => {
    const { hub, proxy } = await hubBehindProxy(["--store-timeout", String(STORE_TIMEOUT_MS)]);
    // Fill the pool with idle connections through the proxy, all of which the partition will silence.
    const warm = await Promise.all(Array.from({ length: 12 }, () => timed("/v1/runs", "POST")));
    expect(warm.map((r) => r.status)).toEqual(warm.map(() => 201));

    proxy.set("blackhole");
    // More requests than the pool has connections: the later ones wait for a connection, which counts too.
    for (const round of [1, 2]) {
      const [ready, ...runs] = await Promise.all([
        timed("/readyz"),
        ...Array.from({ length: 25 }, () => timed("/v1/runs", "POST")),
        timed(`/v1/runs/${warm[0]!.run}`),
      ]);
      expect(ready!.status).toBe(503);
      expect(ready!.ms).toBeLessThan(2000);
      for (const r of runs) {
        expect([r.status, r.code]).toEqual([503, "FLEETLINK_E_STORE_UNAVAILABLE"]);
        expect(r.ms).toBeLessThan(STORE_TIMEOUT_MS + 1000);
      }
      const slowest = Math.max(...runs.map((r) => r.ms));
      console.log(
        `partition round ${round}: 26 requests 503 STORE_UNAVAILABLE, slowest ${slowest.toFixed(0)} ms ` +
          `(bound ${STORE_TIMEOUT_MS} ms); /readyz 503 in ${ready!.ms.toFixed(0)} ms`,
      );
    }

    proxy.set("pass");
    const healed = performance.now();
    for (;;) {
      const r = await timed("/v1/runs", "POST");
      if (r.status === 201) break;
      expect(r.code).toBe("FLEETLINK_E_STORE_UNAVAILABLE");
      expect(performance.now() - healed).toBeLessThan(5000);
      await sleep(50);
    }
    const recoveredMs = performance.now() - healed;
    // No dead connection was kept: every request after healing succeeds, concurrent ones included.
    const after = await Promise.all(Array.from({ length: 30 }, () => timed("/v1/runs", "POST")));
    expect(after.map((r) => r.status)).toEqual(after.map(() => 201));
    expect((await timed("/readyz")).status).toBe(200);
    console.log(`partition healed: first 201 after ${recoveredMs.toFixed(0)} ms, then 30 of 30 succeeded`);
    expect(hub.child.exitCode).toBeNull();
  }, 60_000);

  test("partition - by default a request fails 503 STORE_UNAVAILABLE within 5 s (+1 s), not after the statement timeout", async () => {
    const { proxy } = await hubBehindProxy([]);
    const warm = await timed("/v1/runs", "POST");
    expect(warm.status).toBe(201);
    proxy.set("blackhole");
    const runs = await Promise.all([
      ...Array.from({ length: 15 }, () => timed("/v1/runs", "POST")),
      timed(`/v1/runs/${warm.run}`),
    ]);
    for (const r of runs) {
      expect([r.status, r.code]).toEqual([503, "FLEETLINK_E_STORE_UNAVAILABLE"]);
      expect(r.ms).toBeLessThan(5000 + 1000);
    }
    console.log(
      `partition, default bound: 16 requests 503, slowest ${Math.max(...runs.map((r) => r.ms)).toFixed(0)} ms`,
    );
    proxy.set("pass");
  }, 60_000);

  test("partition - opening an existing store (create: false) behind the blackhole fails STORE_UNAVAILABLE within queryTimeoutMs", async () => {
    const pgUrl = new URL(PG_URL!);
    const p = await startProxy({ host: pgUrl.hostname, port: Number(pgUrl.port || 5432) });
    proxies.push(p);
    p.set("blackhole");
    const t0 = performance.now();
    await rejectsWith(
      openStore(via(made.url, Number(new URL(p.url).port)), { create: false, queryTimeoutMs: 800 }),
      "STORE_UNAVAILABLE",
    );
    expect(performance.now() - t0).toBeLessThan(800 + 1000);
  });

  test("partition - a store timeout that is not a positive integer is refused, naming queryTimeoutMs", async () => {
    for (const bad of [0, -5, 1.5, Number.NaN])
      for (const create of [true, false])
        await rejectsWith(
          openStore(made.url, { queryTimeoutMs: bad, create }),
          "INVALID_ARGUMENT",
          "queryTimeoutMs",
        );
  });

  test("partition - a call timed out inside a transaction destroys its connection: the next call never runs in that transaction", async () => {
    // One connection, and a server that would wait a minute: only the client's bound ends the wait.
    const s = await PostgresStore.open(made.url, {
      queryTimeoutMs: 500,
      statementTimeoutMs: 60_000,
      poolSize: 1,
    });
    const admin = new pg.Client({ connectionString: made.url.replace(/\?.*$/, "") });
    await admin.connect();
    try {
      const run = await s.createRun();
      await admin.query("BEGIN");
      await admin.query(`SELECT 1 FROM "${made.schema}".runs WHERE id = $1 FOR UPDATE`, [run.id]);
      const t0 = performance.now();
      await rejectsWith(s.transitionRun(run.id, "pending", "running"), "STORE_UNAVAILABLE");
      expect(performance.now() - t0).toBeLessThan(500 + 1000);
      await admin.query("ROLLBACK");
      // Had the connection gone back to the pool, this would run inside the timed-out transaction, whose
      // UPDATE goes through once the lock is released, and its COMMIT would commit that UPDATE too.
      const other = await s.createRun();
      await sleep(200);
      expect((await s.getRun(run.id)).status).toBe("pending");
      expect((await s.getRun(other.id)).status).toBe("pending");
      expect((await s.transitionRun(run.id, "pending", "running")).status).toBe("running");
    } finally {
      await admin.end();
      await s.close();
    }
  });
});
