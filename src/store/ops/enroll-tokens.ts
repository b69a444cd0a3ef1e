import { FleetlinkError } from "../../protocol/errors.ts";
import { isId, newId } from "../../protocol/ids.ts";
import type { Db } from "../dialect.ts";
import { toEnrollToken } from "../rows.ts";
import { usableToken } from "../rules.ts";
import {
  checkId,
  checkNewEnrollToken,
  type EnrollTokenRecord,
  enrollRefusal,
  type NewEnrollToken,
  tenantFilter,
  tenantOrDefault,
} from "../store.ts";
import { checkCredential } from "./principals.ts";

export const createEnrollToken = async (db: Db, input: NewEnrollToken): Promise<EnrollTokenRecord> => {
  checkNewEnrollToken(input);
  const tenant = tenantOrDefault("tenant", input.tenant);
  const [r] = await db.tx((c) =>
    c.q(
      `INSERT INTO enroll_tokens (id, label, secret_hash, created_at, expires_at, uses, used, tenant)
       VALUES ($1, $2, $3, $4, $5, $6, 0, $7) RETURNING *`,
      [
        newId(),
        input.label ?? null,
        input.secretHash,
        c.now,
        input.expiresAt ?? null,
        input.uses ?? null,
        tenant,
      ],
    ),
  );
  return toEnrollToken(r!);
};

export const listEnrollTokens = async (
  db: Db,
  opts: { tenant?: string } = {},
): Promise<EnrollTokenRecord[]> => {
  const tenant = tenantFilter(opts.tenant);
  const rows = await db.tx(
    (c) =>
      c.q(
        `SELECT * FROM enroll_tokens WHERE (CAST($1 AS TEXT) IS NULL OR tenant = $1)
         ORDER BY created_at DESC, seq DESC`,
        [tenant],
      ),
    "read",
  );
  return rows.map(toEnrollToken);
};

export const revokeEnrollToken = async (db: Db, id: string): Promise<EnrollTokenRecord> => {
  checkId("id", id);
  const [r] = await db.tx(async (c) => {
    const rows = await c.q(
      "UPDATE enroll_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING *",
      [id, c.now],
    );
    if (!rows[0]) throw new FleetlinkError("TOKEN_NOT_FOUND", `no enrollment token ${id}`, { field: "id" });
    return rows;
  });
  return toEnrollToken(r!);
};

export const useEnrollToken = async (db: Db, id: string, secretHash: string): Promise<EnrollTokenRecord> => {
  if (!isId(id) || typeof secretHash !== "string") throw enrollRefusal(undefined, "", 0);
  return db.tx(async (c) => {
    // Every condition is in the UPDATE's WHERE: on PostgreSQL a racing use waits for this row lock and then
    // re-checks `used < uses` against the committed row; on SQLite the write lock serialises the two. Either
    // way the last use goes to exactly one caller. `enrollRefusal` only says why, after the rule said no.
    const [r] = await c.q(
      `UPDATE enroll_tokens SET used = used + 1, used_at = $3
       WHERE id = $1 AND secret_hash = $2 AND ${usableToken("$3")}
       RETURNING *`,
      [id, secretHash, c.now],
    );
    if (r) return toEnrollToken(r);
    const [cur] = await c.q("SELECT * FROM enroll_tokens WHERE id = $1", [id]);
    throw enrollRefusal(cur && toEnrollToken(cur), secretHash, c.now);
  });
};

/**
 * Checks a token as useEnrollToken would take it (secret, not revoked, not expired, not used up) without taking a
 * use: a read. The same refusals, so a wrong secret learns nothing.
 */
export const checkEnrollToken = (db: Db, id: string, secretHash: string): Promise<EnrollTokenRecord> =>
  checkCredential(
    db,
    { table: "enroll_tokens", usable: usableToken, toRecord: toEnrollToken, refusal: enrollRefusal },
    id,
    secretHash,
  );
