import { openStore } from "../../src/store/open.ts";
import { storeConformance } from "./store.conformance.ts";

// `memory:` is a private SQLite `:memory:` database: the SQLite store's code on another open path (no file, no
// WAL). A private in-memory database cannot be opened twice, so the "replica" is the same handle.
storeConformance("memory", async (opts) => {
  const store = await openStore("memory:", opts);
  return { store, cleanup: async () => {}, replica: async () => store };
});
