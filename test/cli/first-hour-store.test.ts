// `fleetlink store`: reading a store never creates one (a typo in --db is an error naming the path), and
// cleanup's --older-than is a duration with a unit, refused by name when it is not.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, test } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.ts";
import { dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";

const CLI = join(import.meta.dirname, "../../src/cli/main.ts");
const dir = mkdtempSync(join(tmpdir(), "fleetlink-store-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fleetlink = (...args: string[]) =>
  promisify(execFile)(process.execPath, [CLI, ...args], { cwd: dir, timeout: 30_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }),
  );

describe("fleetlink store", () => {
  test("stats on a path that does not exist: refused naming the path, and no database is created", async () => {
    const r = await fleetlink("store", "stats", "--db", "sqlite:./typo.db");
    expect(r.code).toBe(ExitCode.usage);
    expect(r.stderr).toContain(`no SQLite store at ${join(dir, "typo.db")}`);
    expect(r.stderr).toContain("store migrate");
    expect(readdirSync(dir).filter((f) => f.startsWith("typo"))).toEqual([]);
    // The default --db too.
    const d = await fleetlink("store", "stats");
    expect(d.code).toBe(ExitCode.usage);
    expect(d.stderr).toContain(join(dir, "fleetlink.db"));
    expect(existsSync(join(dir, "fleetlink.db"))).toBe(false);
  });

  test("stats and cleanup on a file that is not a fleetlink store: refused, the file left as it was", async () => {
    writeFileSync(join(dir, "notes.txt"), "hello\n");
    for (const cmd of ["stats", "cleanup"]) {
      const r = await fleetlink("store", cmd, "--db", "sqlite:./notes.txt");
      expect(r.code).toBe(ExitCode.usage);
      expect(r.stderr).toContain(`${join(dir, "notes.txt")} is not a fleetlink SQLite store`);
    }
    expect(readdirSync(dir).filter((f) => f.startsWith("notes"))).toEqual(["notes.txt"]);
  });

  test("migrate creates the store; stats and cleanup --older-than 1h then work on it", async () => {
    expect((await fleetlink("store", "migrate", "--db", "sqlite:./fleet.db")).code).toBe(0);
    const s = await fleetlink("store", "stats", "--db", "sqlite:./fleet.db");
    expect(s.code).toBe(0);
    expect(JSON.parse(s.stdout).runs).toEqual({ pending: 0, running: 0, finished: 0 });
    const c = await fleetlink("store", "cleanup", "--db", "sqlite:./fleet.db", "--older-than", "1h");
    expect(c.code).toBe(0);
    expect(JSON.parse(c.stdout)).toMatchObject({ instructions: 0, replies: 0, runs: 0 });
  });

  test("stats on a stopped fleet: a node whose heartbeat window ran out counts as offline, not online", async () => {
    const { openStore } = await import("../../src/store/open.ts");
    const db = `sqlite:${join(dir, "stopped.db")}`;
    const s = await openStore(db);
    const gone = await s.registerNode({ name: "gone", heartbeatIntervalMs: 100 });
    await s.heartbeat(gone.id); // online until now + 200 ms; then the fleet stops: no hub sweeps it
    await s.heartbeat((await s.registerNode({ name: "live", heartbeatIntervalMs: 3_600_000 })).id);
    await s.close();
    await new Promise((r) => setTimeout(r, 300));
    const r = await fleetlink("store", "stats", "--db", db);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).nodes).toMatchObject({ online: 1, offline: 1 });
  });

  test("cleanup --older-than takes a duration with a unit and refuses anything else, naming the flag", async () => {
    for (const bad of ["1x", "3600000", "-1h", "soon"]) {
      const r = await fleetlink("store", "cleanup", "--db", "sqlite:./fleet.db", "--older-than", bad);
      expect(r.code, bad).toBe(ExitCode.usage);
      expect(r.stderr, bad).toMatch(/--older-than/);
      expect(r.stdout, bad).toBe("");
    }
  });

  test.skipIf(!PG_URL)(
    "postgres - stats on a schema that does not exist: refused naming it, and the schema is not created",
    async () => {
      const { url, schema } = pgSchemaUrl("statstypo");
      try {
        const r = await fleetlink("store", "stats", "--db", url);
        expect(r.code).toBe(ExitCode.usage);
        expect(r.stderr).toContain(`no fleetlink store in schema "${schema}"`);
        const pg = (await import("pg")).default;
        const c = new pg.Client({ connectionString: PG_URL });
        await c.connect();
        try {
          const found = await c.query("SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", [
            schema,
          ]);
          expect(found.rowCount).toBe(0);
        } finally {
          await c.end();
        }
        expect((await fleetlink("store", "migrate", "--db", url)).code).toBe(0);
        expect((await fleetlink("store", "stats", "--db", url)).code).toBe(0);
      } finally {
        await dropSchema(schema);
      }
    },
  );
});
