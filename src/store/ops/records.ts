import { FleetlinkError } from "../../protocol/errors.ts";
import type { Db } from "../dialect.ts";
import { toRecord } from "../rows.ts";
import { checkName, type StoredRecord } from "../store.ts";

export const getRecord = async <T>(db: Db, key: string): Promise<StoredRecord<T> | null> => {
  checkName("key", key, 500);
  const [r] = await db.tx((c) => c.q("SELECT * FROM records WHERE key = $1", [key]), "read");
  return r ? toRecord<T>(r) : null;
};

export const listRecords = async <T>(db: Db, prefix: string): Promise<StoredRecord<T>[]> => {
  const rows = await db.tx(
    (c) => c.q("SELECT * FROM records WHERE substr(key, 1, length($1)) = $1 ORDER BY key", [prefix]),
    "read",
  );
  return rows.map((r) => toRecord<T>(r));
};

export const putRecord = async <T>(
  db: Db,
  key: string,
  value: T,
  expectedVersion: number | null,
): Promise<StoredRecord<T>> => {
  checkName("key", key, 500);
  const json = JSON.stringify(value);
  return db.tx(async (c) => {
    // One statement each way: the version guard makes racing writers exclusive.
    const [r] =
      expectedVersion === null
        ? await c.q(
            `INSERT INTO records (key, version, value, updated_at) VALUES ($1, 1, $2, $3)
             ON CONFLICT (key) DO NOTHING RETURNING *`,
            [key, json, c.now],
          )
        : await c.q(
            "UPDATE records SET version = version + 1, value = $2, updated_at = $3 WHERE key = $1 AND version = $4 RETURNING *",
            [key, json, c.now, expectedVersion],
          );
    if (r) return toRecord<T>(r);
    const [cur] = await c.q("SELECT version FROM records WHERE key = $1", [key]);
    throw new FleetlinkError("STATUS_CONFLICT", `record ${key} is at version ${cur?.version ?? "none"}`, {
      field: "expectedVersion",
    });
  });
};
