import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import pg from "pg";
import { afterEach, describe, expect, test } from "vitest";
import { newId } from "../../src/protocol/ids.ts";
import { DEFAULT_TENANT } from "../../src/protocol/types.ts";
import { postgresMigrations } from "../../src/store/migrations/postgres.ts";
import { sqliteMigrations } from "../../src/store/migrations/sqlite.ts";
import { PostgresStore } from "../../src/store/postgres.ts";
import { SqliteStore } from "../../src/store/sqlite.ts";
import type { Store } from "../../src/store/store.ts";
import { describePg, dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";

/** The last migration before tenants: a database at this version holds rows that have no tenant yet. */
const BEFORE_TENANTS = 9;

const ids = { run: newId(), node: newId(), token: newId() };
const T = 1_800_000_000_000;
/** Rows as a fleetlink from before tenants wrote them. */
const OLD_ROWS = [
  `INSERT INTO runs (id, status, reason, created_at, updated_at) VALUES ('${ids.run}', 'pending', NULL, ${T}, ${T})`,
  `INSERT INTO nodes (id, name, status, heartbeat_interval_ms, online_until, credential_hash, created_at, approved)
   VALUES ('${ids.node}', 'old', 'online', 60000, ${T + 120_000}, 'h', ${T}, 1)`,
  `INSERT INTO enroll_tokens (id, label, secret_hash, created_at) VALUES ('${ids.token}', NULL, 'k', ${T})`,
];

/** What an upgraded store must show: the old rows in the default tenant, and a push between them working. */
const expectDefaultTenant = async (store: Store) => {
  expect((await store.getRun(ids.run)).tenant).toBe(DEFAULT_TENANT);
  expect((await store.getNode(ids.node)).tenant).toBe(DEFAULT_TENANT);
  expect((await store.listEnrollTokens({ tenant: DEFAULT_TENANT })).map((t) => t.id)).toEqual([ids.token]);
  expect((await store.listRuns({ tenant: DEFAULT_TENANT })).map((r) => r.id)).toEqual([ids.run]);
  expect((await store.listNodes({ tenant: DEFAULT_TENANT })).map((n) => n.id)).toEqual([ids.node]);
  const [i] = await store.pushInstructions(ids.run, [{ dst: ids.node, method: "m", ttlMs: 60_000 }]);
  expect(i?.dst).toBe(ids.node);
  // A new tenant's run does not reach the old node.
  const other = await store.createRun({ tenant: "new-team" });
  await expect(
    store.pushInstructions(other.id, [{ dst: ids.node, method: "m", ttlMs: 60_000 }]),
  ).rejects.toMatchObject({ code: "FLEETLINK_E_NODE_NOT_FOUND", field: "items[0].dst" });
  expect(await store.listPrincipals()).toEqual([]);
  expect((await store.listAudit()).entries).toEqual([]);
};

describe("tenancy migration", () => {
  let done: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const f of done.reverse()) await f();
    done = [];
  });

  test("sqlite - rows from before tenants belong to the default tenant after the upgrade", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fleetlink-tenancy-"));
    done.push(async () => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "old.db");
    const db = new DatabaseSync(path);
    db.exec("CREATE TABLE fleetlink_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at INTEGER)");
    for (const m of sqliteMigrations.filter((x) => x.version <= BEFORE_TENANTS)) {
      db.exec(m.sql);
      db.prepare("INSERT INTO fleetlink_migrations VALUES (?, ?, ?)").run(m.version, m.name, T);
    }
    for (const sql of OLD_ROWS) db.exec(sql);
    db.close();
    const store = new SqliteStore(path, { clock: () => T });
    done.push(() => store.close());
    await expectDefaultTenant(store);
  });

  describePg("postgres", () => {
    test("postgres - rows from before tenants belong to the default tenant after the upgrade", async () => {
      const { url, schema } = pgSchemaUrl("tenancy");
      done.push(() => dropSchema(schema));
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        await c.query(`CREATE SCHEMA "${schema}"`);
        await c.query(`SET search_path = "${schema}"`);
        await c.query(
          "CREATE TABLE fleetlink_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at BIGINT)",
        );
        for (const m of postgresMigrations.filter((x) => x.version <= BEFORE_TENANTS)) {
          await c.query(m.sql);
          await c.query("INSERT INTO fleetlink_migrations VALUES ($1, $2, $3)", [m.version, m.name, T]);
        }
        for (const sql of OLD_ROWS) await c.query(sql);
      } finally {
        await c.end();
      }
      const store = await PostgresStore.open(url, { clock: () => T });
      done.push(() => store.close());
      await expectDefaultTenant(store);
    });
  });
});
