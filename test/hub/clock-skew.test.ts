// One clock, the database's: a replica whose host clock is far off does not fail calls or steal leases.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, test } from "vitest";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { describePg, dropSchema, pgSchemaUrl } from "../helpers/postgres.ts";
import { enrollTokenFor, type Proc, startCli, startHubProc, startNodeProc } from "../helpers/procs.ts";

const TOKEN = "skew-token";

describePg("clock skew", () => {
  const procs: Proc[] = [];
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-skew-"));
  const made = pgSchemaUrl("skew");
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill("SIGKILL")));
    await dropSchema(made.schema);
    rmSync(dir, { recursive: true, force: true });
  });

  test("skew - a replica 15 s ahead and one 31 s behind: calls through each to nodes on the other all succeed", async () => {
    const normal = await startHubProc(made.url, TOKEN, ["--heartbeat", "500"]);
    procs.push(normal);
    const skewed = (offset: number) =>
      startCli(
        [
          "serve",
          "--db",
          made.url,
          "--port",
          "0",
          "--token",
          TOKEN,
          "--enroll-token",
          enrollTokenFor(TOKEN),
          "--heartbeat",
          "500",
        ],
        /listening on (\S+)/,
        { FLEETLINK_FAULT_CLOCK_OFFSET_MS: String(offset) },
      );
    const ahead = await skewed(15_000);
    const behind = await skewed(-31_000);
    procs.push(ahead, behind);
    const onNormal = await startNodeProc(
      [normal.value],
      "n-normal",
      enrollTokenFor(TOKEN),
      join(dir, "a.json"),
    );
    const onAhead = await startNodeProc([ahead.value], "n-ahead", enrollTokenFor(TOKEN), join(dir, "b.json"));
    const onBehind = await startNodeProc(
      [behind.value],
      "n-behind",
      enrollTokenFor(TOKEN),
      join(dir, "c.json"),
    );
    procs.push(onNormal, onAhead, onBehind);
    for (const via of [normal, ahead, behind]) {
      const fleet = await Fleet.connect({ hub: via.value, token: TOKEN });
      const run = await fleet.createRun();
      const cfg = run.configuration(await fleet.nodes());
      expect(cfg.size).toBe(3);
      let failed = 0;
      for (let i = 0; i < 20; i++)
        await cfg.call("echo", i, { quorum: "all", timeoutMs: 3000 }).catch(() => failed++);
      expect({ via: via.value, failed }).toEqual({ via: via.value, failed: 0 });
      await fleet.close();
    }
  }, 90_000);
});
