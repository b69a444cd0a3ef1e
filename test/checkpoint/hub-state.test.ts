// The hub's own SQLite state, checkpointed like a one-host run: online backup, manifest last, restore first.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, test } from "vitest";
import { pushHubSnapshot, restoreHubSnapshot } from "../../src/checkpoint/hub-state.ts";
import { listCheckpoints } from "../../src/checkpoint/layout.ts";
import { openObjectStore } from "../../src/checkpoint/object-store.ts";
import { SqliteStore } from "../../src/store/sqlite.ts";
import { startHubProc } from "../helpers/procs.ts";

const run = promisify(execFile);
const CLI = join(import.meta.dirname, "../../src/cli/main.ts");
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
    const push = await run(process.execPath, [
      CLI,
      "checkpoint",
      "push",
      "--db",
      `sqlite:${join(dir, "c.db")}`,
      "--store",
      store,
    ]);
    const { id } = JSON.parse(push.stdout) as { id: string };
    expect(push.stderr).toMatch(/push \[#+\] 100%/);
    const list = await run(process.execPath, [CLI, "checkpoint", "list", "--store", store]);
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
    const bad = await run(process.execPath, [
      CLI,
      "checkpoint",
      "pull",
      "--db",
      `sqlite:${join(dir, "x.db")}`,
      "--store",
      store,
      "--id",
      "0190e2b4-0000-7000-8000-000000000000",
    ]).catch((e) => e);
    expect(bad.stderr).toMatch(/FLEETLINK_E_CHECKPOINT_NOT_FOUND/);
  }, 30_000);
});
