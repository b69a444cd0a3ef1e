import { FleetlinkError } from "../../protocol/errors.ts";
import { isId, newId } from "../../protocol/ids.ts";
import type { Db } from "../dialect.ts";
import { type Row, toPrincipal } from "../rows.ts";
import { usablePrincipal } from "../rules.ts";
import {
  checkId,
  checkNewPrincipal,
  type NewPrincipal,
  type PrincipalRecord,
  principalRefusal,
  tenantFilter,
} from "../store.ts";

export const createPrincipal = async (db: Db, input: NewPrincipal): Promise<PrincipalRecord> => {
  checkNewPrincipal(input);
  const [r] = await db.tx((c) =>
    c.q(
      `INSERT INTO principals (id, label, role, tenant, secret_hash, created_at, expires_at, revoked_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, NULL) RETURNING *`,
      [
        newId(),
        input.label ?? null,
        input.role,
        input.tenant ?? null,
        input.secretHash,
        c.now,
        input.expiresAt ?? null,
      ],
    ),
  );
  return toPrincipal(r!);
};

export const listPrincipals = async (db: Db, opts: { tenant?: string } = {}): Promise<PrincipalRecord[]> => {
  const tenant = tenantFilter(opts.tenant);
  const rows = await db.tx(
    (c) =>
      c.q(
        `SELECT * FROM principals WHERE (CAST($1 AS TEXT) IS NULL OR tenant = $1)
         ORDER BY created_at DESC, seq DESC`,
        [tenant],
      ),
    "read",
  );
  return rows.map(toPrincipal);
};

export const revokePrincipal = async (db: Db, id: string): Promise<PrincipalRecord> => {
  checkId("id", id);
  const [r] = await db.tx(async (c) => {
    const rows = await c.q(
      "UPDATE principals SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING *",
      [id, c.now],
    );
    if (!rows[0]) throw new FleetlinkError("TOKEN_NOT_FOUND", `no token ${id}`, { field: "id" });
    return rows;
  });
  return toPrincipal(r!);
};

/**
 * Checks a presented credential of `table` (principals, enroll_tokens) in one statement, no transaction: the
 * rule `usable(now)` is judged by the store's clock in SQL, against the row as committed now, so a revoke on any
 * replica is seen by the next call here. `refusal` only says why, after the rule said no (an unknown or malformed
 * id and a wrong hash read alike, so a wrong secret learns nothing).
 */
export const checkCredential = async <T extends { secretHash: string }>(
  db: Db,
  c: {
    table: "principals" | "enroll_tokens";
    usable: (now: string) => string;
    toRecord: (r: Row) => T;
    refusal: (t: T | undefined, secretHash: string, now: number) => Error;
  },
  id: string,
  secretHash: string,
): Promise<T> => {
  if (!isId(id) || typeof secretHash !== "string") throw c.refusal(undefined, "", 0);
  const [r] = await db.auto((q, nowParam) =>
    q(
      `SELECT *, ${db.d.now("$2")} AS now_ms, CASE WHEN ${c.usable(db.d.now("$2"))} THEN 1 ELSE 0 END AS usable
       FROM ${c.table} WHERE id = $1`,
      [id, nowParam],
    ),
  );
  const t = r && c.toRecord(r);
  if (t && t.secretHash === secretHash && Number(r!.usable) === 1) return t;
  throw c.refusal(t, secretHash, Number(r?.now_ms ?? 0));
};

/** A principal's credential: usablePrincipal (not revoked, not expired), else principalRefusal. */
export const authenticatePrincipal = (db: Db, id: string, secretHash: string): Promise<PrincipalRecord> =>
  checkCredential(
    db,
    { table: "principals", usable: usablePrincipal, toRecord: toPrincipal, refusal: principalRefusal },
    id,
    secretHash,
  );
