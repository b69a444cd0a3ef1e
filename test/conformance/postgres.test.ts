import { PostgresStore } from "../../src/store/postgres.ts";
import { describePg, dropSchema, pgSchemaUrl } from "../helpers/postgres.ts";
import { storeConformance } from "./store.conformance.ts";

describePg("postgres", () => {
  storeConformance("postgres", async (opts) => {
    const { url, schema } = pgSchemaUrl("conf");
    return {
      store: await PostgresStore.open(url, opts),
      cleanup: () => dropSchema(schema),
      replica: () => PostgresStore.open(url, opts),
    };
  });
});
