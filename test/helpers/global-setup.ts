/** Runs once per `vitest run`: says loudly whether the PostgreSQL suite runs. */
export default async function setup(): Promise<void> {
  const url = process.env.FLEETLINK_TEST_POSTGRES_URL;
  if (!url) {
    if (process.env.CI)
      throw new Error(
        "CI=true but FLEETLINK_TEST_POSTGRES_URL is not set: the PostgreSQL suite must run in CI",
      );
    console.warn(
      "\n[fleetlink] PostgreSQL suite SKIPPED: set FLEETLINK_TEST_POSTGRES_URL=postgres://user@host:5432/db to run it.\n",
    );
    return;
  }
  const pg = (await import("pg")).default;
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await c.connect();
    await c.query("SELECT 1");
  } catch (e) {
    throw new Error(
      `FLEETLINK_TEST_POSTGRES_URL=${url} is set but PostgreSQL cannot be reached: ${(e as Error).message}`,
    );
  } finally {
    await c.end().catch(() => {});
  }
}
