import { FleetlinkError } from "../../protocol/errors.ts";
import { isId, newId } from "../../protocol/ids.ts";
import type { Db } from "../dialect.ts";
import { toPrincipal } from "../rows.ts";
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
 * One statement, no transaction: the rule (usablePrincipal) is judged by the store's clock in SQL, against the
 * row as committed now, so a revoke on any replica is seen by the next call here. `principalRefusal` only says
 * why, after the rule said no.
 */
export const authenticatePrincipal = async (
  db: Db,
  id: string,
  secretHash: string,
): Promise<PrincipalRecord> => {
  if (!isId(id) || typeof secretHash !== "string") throw principalRefusal(undefined, "", 0);
  const [r] = await db.auto((q, nowParam) =>
    q(
      `SELECT *, ${db.d.now("$2")} AS now_ms, CASE WHEN ${usablePrincipal(db.d.now("$2"))} THEN 1 ELSE 0 END AS usable
       FROM principals WHERE id = $1`,
      [id, nowParam],
    ),
  );
  const p = r && toPrincipal(r);
  if (p && p.secretHash === secretHash && Number(r!.usable) === 1) return p;
  throw principalRefusal(p, secretHash, Number(r?.now_ms ?? 0));
};
