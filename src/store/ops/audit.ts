import type { Db } from "../dialect.ts";
import { toAudit } from "../rows.ts";
import {
  type AuditEntry,
  checkAuditEntries,
  checkListAudit,
  type ListAuditOptions,
  type NewAuditEntry,
} from "../store.ts";

/** Appends the entries in one transaction (one multi-row INSERT), in order: seq follows the array. */
export const appendAudit = async (db: Db, entries: readonly NewAuditEntry[]): Promise<void> => {
  const details = checkAuditEntries(entries);
  if (entries.length === 0) return;
  await db.tx(async (c) => {
    const params: unknown[] = [c.now];
    const tuples = entries.map((e, i) => {
      const b = params.length;
      params.push(
        e.principal,
        e.role,
        e.tenant ?? null,
        e.address ?? null,
        e.action,
        e.target ?? null,
        e.outcome,
        details[i],
      );
      return `($1, ${Array.from({ length: 8 }, (_, k) => `$${b + k + 1}`).join(", ")})`;
    });
    await c.q(
      `INSERT INTO audit (at, principal, role, tenant, address, action, target, outcome, detail)
       VALUES ${tuples.join(", ")}`,
      params,
    );
  });
};

/** Newest first; one more row than asked is read to know whether an older page exists. */
export const listAudit = async (
  db: Db,
  opts: ListAuditOptions = {},
): Promise<{ entries: AuditEntry[]; nextBeforeSeq: number | null }> => {
  const o = checkListAudit(opts);
  const rows = await db.tx(
    (c) =>
      c.q(
        `SELECT * FROM audit
         WHERE (CAST($1 AS TEXT) IS NULL OR tenant = $1)
           AND (CAST($2 AS BIGINT) IS NULL OR seq > $2)
           AND (CAST($3 AS BIGINT) IS NULL OR seq < $3)
           AND (CAST($4 AS TEXT) IS NULL OR action = $4)
           AND (CAST($5 AS TEXT) IS NULL OR principal = $5)
         ORDER BY seq DESC LIMIT $6`,
        [o.tenant, o.afterSeq, o.beforeSeq, o.action, o.principal, o.limit + 1],
      ),
    "read",
  );
  const entries = rows.slice(0, o.limit).map(toAudit);
  return { entries, nextBeforeSeq: rows.length > o.limit ? entries[entries.length - 1]!.seq : null };
};
