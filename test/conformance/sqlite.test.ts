import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteStore } from "../../src/store/sqlite.ts";
import { storeConformance } from "./store.conformance.ts";

storeConformance("sqlite", async (opts) => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-sqlite-"));
  return {
    store: new SqliteStore(join(dir, "fleet.db"), opts),
    replica: async () => new SqliteStore(join(dir, "fleet.db"), opts),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});
