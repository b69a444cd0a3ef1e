// The hub's own SQLite state, checkpointed like a one-host run: online backup, manifest last, restore first.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, test } from "vitest";
import { assertNotInUse, pushHubSnapshot, restoreHubSnapshot } from "../../src/checkpoint/hub-state.ts";
import { listCheckpoints } from "../../src/checkpoint/layout.ts";
import { openObjectStore } from "../../src/checkpoint/open.ts";
import { ExitCode } from "../../src/cli/exit-codes.ts";
import { SqliteStore } from "../../src/store/sqlite.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { startHubProc } from "../helpers/procs.ts";

const run = promisify(execFile);
const CLI = join(import.meta.dirname, "../../src/cli/main.ts");
/** `fleetlink checkpoint <args>` as its own process. */
const checkpoint = (...args: string[]) => run(process.execPath, [CLI, "checkpoint", ...args]);
const dir = mkdtempSync(join(tmpdir(), "fleetlink-hubstate-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("hub state checkpoints", () => {
  test("snapshot - a consistent copy of a live database restores to the same state", async () => {
    const objects = openObjectStore(`file://${join(dir, "objects-a")}`);
    const live = new SqliteStore(join(dir, "live.db"));
    const runIds = [];
    for (let i = 0; i < 20; i++) runIds.push((await live.createRun()).id);
    const m = await pushHubSnapshot(live, objects);
    await live.createRun(); // after the snapshot: not in it
    await live.close();
    expect((await listCheckpoints(objects, "hub")).map((x) => x.id)).toEqual([m.id]);
    const r = await restoreHubSnapshot(objects, join(dir, "restored.db"), "latest");
    expect(r).toMatchObject({ restored: true, id: m.id });
    const back = new SqliteStore(join(dir, "restored.db"));
    expect((await back.stats()).runs.pending).toBe(20);
    for (const id of runIds) expect((await back.getRun(id)).id).toBe(id);
    await back.close();
  });

  test("restore - a local database newer than the checkpoint wins, and says so", async () => {
    const objects = openObjectStore(`file://${join(dir, "objects-b")}`);
    const s = new SqliteStore(join(dir, "b.db"));
    await s.createRun();
    const m = await pushHubSnapshot(s, objects);
    await s.createRun();
    await s.close();
    const later = new Date(m.createdAt + 60_000);
    utimesSync(join(dir, "b.db"), later, later);
    const r = await restoreHubSnapshot(objects, join(dir, "b.db"));
    expect(r.restored).toBe(false);
    expect(r.reason).toMatch(/newer than checkpoint/);
    const s2 = new SqliteStore(join(dir, "b.db"));
    expect((await s2.stats()).runs.pending).toBe(2);
    await s2.close();
    expect((await restoreHubSnapshot(objects, join(dir, "b.db"), m.id, { force: true })).restored).toBe(true);
  });

  test("cli - checkpoint push/list/pull of a hub database with progress, and serve --start-from-checkpoint", async () => {
    const store = `file://${join(dir, "objects-c")}`;
    const src = new SqliteStore(join(dir, "c.db"));
    const runId = (await src.createRun()).id;
    await src.close();
    const push = await checkpoint("push", "--db", `sqlite:${join(dir, "c.db")}`, "--store", store);
    const { id } = JSON.parse(push.stdout) as { id: string };
    expect(push.stderr).toMatch(/push \[#+\] 100%/);
    const list = await checkpoint("list", "--store", store);
    expect(list.stdout).toContain(id);
    const hub = await startHubProc(`sqlite:${join(dir, "fresh.db")}`, "tok", [
      "--checkpoint-store",
      store,
      "--start-from-checkpoint",
      "latest",
    ]);
    try {
      expect(hub.output()).toContain(`restored ${join(dir, "fresh.db")} from checkpoint ${id}`);
      const res = await fetch(`${hub.value}/v1/runs/${runId}`, { headers: { authorization: "Bearer tok" } });
      expect(res.status).toBe(200);
    } finally {
      await hub.kill();
    }
    const bad = await checkpoint(
      "pull",
      "--db",
      `sqlite:${join(dir, "x.db")}`,
      "--store",
      store,
      "--id",
      "0190e2b4-0000-7000-8000-000000000000",
    ).catch((e) => e);
    expect(bad.stderr).toMatch(/FLEETLINK_E_CHECKPOINT_NOT_FOUND/);
  }, 30_000);

  test("pull --force - refused while a hub process has the database open; allowed once it stopped", async () => {
    const store = `file://${join(dir, "objects-d")}`;
    const db = join(dir, "d.db");
    const hub = await startHubProc(`sqlite:${db}`, "tok-d");
    let hubAlive = true;
    try {
      const headers = { authorization: "Bearer tok-d" };
      const post = await fetch(`${hub.value}/v1/runs`, { method: "POST", headers });
      expect(post.status).toBe(201);
      // An online backup of the live database, then a pull --force while the hub still runs.
      await checkpoint("push", "--db", `sqlite:${db}`, "--store", store);
      const before = statSync(db).ino;
      const bad = await checkpoint("pull", "--db", `sqlite:${db}`, "--store", store, "--force").catch(
        (e: { code: number; stderr: string }) => e,
      );
      expect((bad as { code: number }).code).toBe(ExitCode.conflict);
      expect((bad as { stderr: string }).stderr).toMatch(
        /FLEETLINK_E_CONFLICT: .*d\.db is open in another process/,
      );
      expect(statSync(db).ino).toBe(before); // not replaced under the hub
      // The hub still serves from the same file: a run created now is there after a restart.
      const later = (
        (await (await fetch(`${hub.value}/v1/runs`, { method: "POST", headers })).json()) as {
          run: { id: string };
        }
      ).run;
      await hub.kill();
      hubAlive = false;
      const again = await startHubProc(`sqlite:${db}`, "tok-d");
      try {
        expect((await fetch(`${again.value}/v1/runs/${later.id}`, { headers })).status).toBe(200);
      } finally {
        await again.kill();
      }
      // No hub: the forced pull goes ahead.
      const ok = await checkpoint("pull", "--db", `sqlite:${db}`, "--store", store, "--force");
      expect(JSON.parse(ok.stdout)).toMatchObject({ restored: true });
    } finally {
      if (hubAlive) await hub.kill();
    }
  }, 60_000);

  test("assertNotInUse - sees an open connection of this or another process, not a closed or crashed one", async () => {
    const db = join(dir, "e.db");
    const s = new SqliteStore(db);
    await s.createRun();
    await rejectsWith(assertNotInUse(db), "CONFLICT");
    const objects = openObjectStore(`file://${join(dir, "objects-e")}`);
    await pushHubSnapshot(s, objects);
    await rejectsWith(restoreHubSnapshot(objects, db, "latest", { force: true }), "CONFLICT");
    await s.close();
    await assertNotInUse(db);
    // A hub killed with SIGKILL holds no lock: its locks died with it.
    const child = await import("node:child_process").then(({ spawn }) =>
      spawn(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `import { SqliteStore } from ${JSON.stringify(join(import.meta.dirname, "../../src/store/sqlite.ts"))};
           const s = new SqliteStore(${JSON.stringify(db)}); await s.createRun(); console.log("open");
           setInterval(() => {}, 1000);`,
        ],
        { stdio: ["ignore", "pipe", "inherit"] },
      ),
    );
    await new Promise<void>((res) => child.stdout!.once("data", () => res()));
    await rejectsWith(assertNotInUse(db), "CONFLICT");
    await new Promise<void>((res) => {
      child.once("exit", () => res());
      child.kill("SIGKILL");
    });
    await assertNotInUse(db);
    expect(readFileSync(db).subarray(0, 15).toString()).toBe("SQLite format 3");
    await assertNotInUse(join(dir, "missing.db"));
  }, 30_000);
});
