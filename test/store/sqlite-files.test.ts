import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { SqliteStore } from "../../src/store/sqlite.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "fleetlink-files-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const mode = (p: string) => statSync(p).mode & 0o777;

test("sqlite files - a database the store creates, and its -wal and -shm, are readable by the owner only", async () => {
  const path = join(dir, "fleet.db");
  const old = process.umask(0o022);
  try {
    const store = new SqliteStore(path);
    await store.registerNode({ name: "n", heartbeatIntervalMs: 1000, credentialHash: "secret-hash" });
    expect(mode(path)).toBe(0o600);
    expect(mode(`${path}-wal`)).toBe(0o600);
    expect(mode(`${path}-shm`)).toBe(0o600);
    await store.close();
  } finally {
    process.umask(old);
  }
});

test("sqlite files - an existing database file keeps the mode its owner chose", async () => {
  const path = join(dir, "shared.db");
  writeFileSync(path, "");
  chmodSync(path, 0o640);
  const store = new SqliteStore(path);
  await store.createRun();
  await store.close();
  expect(mode(path)).toBe(0o640);
});
