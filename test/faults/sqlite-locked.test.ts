// --store-timeout on SQLite: a request waiting for another process's write lock fails typed within it.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, expect, test } from "vitest";
import { type Proc, startHubProc } from "../helpers/procs.ts";

const TOKEN = "sqlite-locked-token";
const dir = mkdtempSync(join(tmpdir(), "fleetlink-sqlite-locked-"));
let hub: Proc | undefined;
afterAll(async () => {
  await hub?.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

test("locked - with --store-timeout 400, POST /v1/runs waiting on another process's write lock answers 503 STORE_UNAVAILABLE within 1.4 s, and 201 once it is released", async () => {
  const file = join(dir, "fleet.db");
  hub = await startHubProc(`sqlite:${file}`, TOKEN, ["--store-timeout", "400"]);
  const post = async () => {
    const t0 = performance.now();
    const res = await fetch(`${hub!.value}/v1/runs`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const body = (await res.json()) as { error?: { code: string } };
    return { status: res.status, code: body.error?.code, ms: performance.now() - t0 };
  };
  expect((await post()).status).toBe(201);
  const other = new DatabaseSync(file);
  other.exec("BEGIN IMMEDIATE");
  try {
    const r = await post();
    console.log(`sqlite locked: ${r.status} ${r.code} in ${r.ms.toFixed(0)} ms (bound 400 ms)`);
    expect([r.status, r.code]).toEqual([503, "FLEETLINK_E_STORE_UNAVAILABLE"]);
    expect(r.ms).toBeLessThan(400 + 1000);
  } finally {
    other.exec("ROLLBACK");
    other.close();
  }
  expect((await post()).status).toBe(201);
}, 30_000);
