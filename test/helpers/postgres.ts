import { describe } from "vitest";
import { newId } from "../../src/protocol/ids.ts";

/** The PostgreSQL the suite runs against; unset means the PostgreSQL suite is skipped (see globalSetup). */
export const PG_URL = process.env.FLEETLINK_TEST_POSTGRES_URL;

export const describePg = PG_URL ? describe : describe.skip;

/** A store URL in a schema of its own; the caller drops it with dropSchema. */
export const pgSchemaUrl = (tag: string): { url: string; schema: string } => {
  const schema = `t_${tag}_${newId().replace(/-/g, "").slice(-12)}`.toLowerCase();
  const u = new URL(PG_URL!);
  u.searchParams.set("schema", schema);
  return { url: u.toString(), schema };
};

export const dropSchema = async (schema: string): Promise<void> => {
  const pg = (await import("pg")).default;
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await c.end();
  }
};
