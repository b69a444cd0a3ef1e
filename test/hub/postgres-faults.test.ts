// A database failover must not take the hub tier down: replicas survive terminated PostgreSQL backends.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, expect, test } from "vitest";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { newId } from "../../src/protocol/ids.ts";
import { describePg, dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";
import { enrollTokenFor, type Proc, startHubProc, startNodeProc } from "../helpers/procs.ts";

const TOKEN = "pg-faults-token";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describePg("hub on PostgreSQL under connection kills", () => {
  const procs: Proc[] = [];
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-pgf-"));
  const made = pgSchemaUrl("hubfaults");
  const app = `fleetlink-hubfaults-${newId().slice(-12)}`;
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill("SIGKILL")));
    await dropSchema(made.schema);
    rmSync(dir, { recursive: true, force: true });
  });

  test("postgres - backends terminated during calls: both replicas stay up and calls succeed again within 3 s", async () => {
    const u = new URL(made.url);
    u.searchParams.set("application_name", app);
    const db = u.toString();
    const a = await startHubProc(db, TOKEN, ["--heartbeat", "500"]);
    const b = await startHubProc(db, TOKEN, ["--heartbeat", "500"]);
    procs.push(a, b);
    for (const name of ["p", "q", "r"])
      procs.push(
        await startNodeProc([a.value, b.value], name, enrollTokenFor(TOKEN), join(dir, `${name}.json`)),
      );
    const fleet = await Fleet.connect({ hub: [a.value, b.value], token: TOKEN });
    const run = await fleet.createRun();
    const cfg = run.configuration(await fleet.nodes());
    expect(cfg.size).toBe(3);
    const admin = new pg.Client({ connectionString: PG_URL, application_name: `${app}-admin` });
    await admin.connect();
    let kills = 0;
    let stop = false;
    const killer = (async () => {
      while (!stop) {
        const r = await admin.query(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
          [app],
        );
        kills += r.rowCount ?? 0;
        await sleep(50);
      }
    })();
    let failed = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 3000)
      await cfg.call("echo", 1, { quorum: "all", timeoutMs: 2000 }).catch(() => failed++);
    stop = true;
    await killer;
    await admin.end();
    expect(kills).toBeGreaterThan(10);
    for (const h of [a, b]) expect(h.child.exitCode).toBeNull();
    // Once the database answers again, calls succeed again, through either replica.
    const healed = Date.now();
    for (;;) {
      const ok = await cfg
        .call("echo", 2, { quorum: "all", timeoutMs: 2000 })
        .then(() => true)
        .catch(() => false);
      if (ok) break;
      expect(Date.now() - healed).toBeLessThan(3000);
    }
    for (let i = 0; i < 20; i++) await cfg.call("echo", i, { quorum: "all", timeoutMs: 2000 });
    for (const h of [a, b]) expect(h.child.exitCode).toBeNull();
    await fleet.close();
    console.log(`postgres faults: ${kills} backends terminated, ${failed} calls failed during the kills`);
  }, 60_000);
});
