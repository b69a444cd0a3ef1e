import pg from "pg";
import { afterAll, beforeAll, expect, test } from "vitest";
import { isFleetlinkError } from "../../src/protocol/errors.ts";
import { newId } from "../../src/protocol/ids.ts";
import { PostgresStore, storeError } from "../../src/store/postgres.ts";
import { describePg, dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describePg("postgres faults", () => {
  const app = `fleetlink-faults-${newId().slice(-12)}`;
  let schema: string;
  let store: PostgresStore;
  let writer: PostgresStore;
  let admin: pg.Client;

  beforeAll(async () => {
    const made = pgSchemaUrl("faults");
    schema = made.schema;
    store = await PostgresStore.open(made.url, { applicationName: app, poolSize: 4 });
    writer = await PostgresStore.open(made.url, { applicationName: app, poolSize: 2 });
    admin = new pg.Client({ connectionString: PG_URL, application_name: `${app}-admin` });
    await admin.connect();
  });
  afterAll(async () => {
    await store?.close();
    await writer?.close();
    await admin?.end();
    await dropSchema(schema);
  });

  /** Terminates every backend of this test's stores (and only those), returning how many. */
  const killAll = async (): Promise<number> =>
    (
      await admin.query(
        "SELECT pg_terminate_backend(pid) AS k FROM pg_stat_activity WHERE application_name = $1",
        [app],
      )
    ).rowCount ?? 0;

  test("faults - terminated connections never crash the process, fail as STORE_UNAVAILABLE, and recover", async () => {
    const run = await store.createRun();
    const node = await store.registerNode({ name: "n", heartbeatIntervalMs: 60_000 });
    await store.heartbeat(node.id);
    let remote = 0;
    const stopWatch = store.watch((source) => {
      if (source === "remote") remote++;
    });
    await sleep(200);
    expect(await killAll()).toBeGreaterThan(0);

    const failures: unknown[] = [];
    let ok = 0;
    const step = async (s: PostgresStore) => {
      const ins = await s.pushInstructions(run.id, [
        { dst: node.id, method: "m", ttlMs: 600_000 },
        { dst: node.id, method: "m", ttlMs: 600_000 },
      ]);
      const res = await s.storeReplies(ins.map((i) => ({ runId: run.id, nodeId: node.id, replyTo: i.id })));
      for (const r of res) if (!r.ok) throw r.error;
      await s.heartbeat(node.id);
      await s.getNode(node.id);
    };
    const worker = async (s: PostgresStore, until: number) => {
      while (Date.now() < until) {
        try {
          await step(s);
          ok++;
        } catch (e) {
          failures.push(e);
        }
      }
    };
    const until = Date.now() + 2000;
    let kills = 0;
    const killer = (async () => {
      while (Date.now() < until) {
        kills += await killAll();
        await sleep(15 + Math.random() * 30);
      }
    })();
    await Promise.all([worker(store, until), worker(store, until), worker(writer, until), killer]);
    expect(kills).toBeGreaterThan(10);
    expect(failures.length).toBeGreaterThan(0);
    const raw = failures.filter((e) => !isFleetlinkError(e, "STORE_UNAVAILABLE"));
    expect(raw.map((e) => String(e))).toEqual([]);
    for (const e of failures) expect(isFleetlinkError(e) && !e.definite && e.status === 503).toBe(true);

    // Once the kills stop, every operation works again within a bound.
    const stopped = Date.now();
    while (true) {
      try {
        await step(store);
        await step(writer);
        break;
      } catch (e) {
        expect(isFleetlinkError(e, "STORE_UNAVAILABLE")).toBe(true);
        if (Date.now() - stopped > 2000) throw e;
        await sleep(20);
      }
    }
    expect(Date.now() - stopped).toBeLessThan(2000);

    // The watcher's LISTEN connection was terminated too; it reconnects and hears other replicas again.
    await sleep(1500);
    remote = 0;
    await writer.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: 600_000 }]);
    const deadline = Date.now() + 2000;
    while (remote === 0 && Date.now() < deadline) await sleep(10);
    stopWatch();
    expect(remote).toBeGreaterThan(0);
    expect(ok).toBeGreaterThan(0);
  });
});

test("faults - lost-connection errors map to STORE_UNAVAILABLE, with or without a code", () => {
  const lost = [
    Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" }),
    Object.assign(new Error("connection failure"), { code: "08006" }),
    Object.assign(new Error("protocol violation"), { code: "08P01" }),
    Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }),
    Object.assign(new Error("write EPIPE"), { code: "EPIPE" }),
    new Error("Connection terminated unexpectedly"),
    new Error("Connection terminated"),
    new Error("Client has encountered a connection error and is not queryable"),
    new Error("Client was closed and is not queryable"),
    new Error("timeout exceeded when trying to connect"),
    new Error("Query read timeout"),
    Object.assign(new Error("canceling statement due to statement timeout"), { code: "57014" }),
    Object.assign(new Error("terminating connection due to idle-in-transaction timeout"), { code: "25P03" }),
  ];
  for (const e of lost) {
    const w = storeError(e);
    expect(isFleetlinkError(w, "STORE_UNAVAILABLE"), e.message).toBe(true);
    expect((w as Error).cause).toBe(e);
  }
  const statementError = Object.assign(new Error("duplicate key"), { code: "23505" });
  expect(storeError(statementError)).toBe(statementError);
  expect(storeError("odd")).toBe("odd");
});
