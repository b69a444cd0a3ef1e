import { MemoryStore } from "../../src/store/memory.ts";
import { storeConformance } from "./store.conformance.ts";

storeConformance("memory", async (opts) => {
  const store = new MemoryStore(opts);
  return { store, cleanup: async () => {}, replica: async () => store };
});
