import { invalid } from "../../protocol/errors.ts";
import type { Db } from "../dialect.ts";
import { liveBlob } from "../rules.ts";
import type { CollectBlobsInput, CollectBlobsResult } from "../types.ts";
import { toBlob, toUpload } from "./blobs.ts";

const checkMs = (field: string, v: unknown): number => {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
    throw invalid(field, "must be an integer >= 0");
  return v;
};

/**
 * Blob garbage collection, in three steps of one transaction: unmark blobs that have a live reference again,
 * mark (orphaned_at = now) those found without one, delete those still without one `graceMs` after their mark.
 *
 * Why it is safe when replicas race (a push adding a reference while a collect deletes): a push references a
 * blob through `holdBlob`, an UPDATE of the blob's row that clears its mark. On PostgreSQL that row lock orders
 * the two: if the push locked first, the DELETE waits for its commit and re-checks its `orphaned_at <= cutoff`
 * guard on the row version the push wrote (mark cleared) and keeps the blob; if the DELETE locked first, the
 * push's UPDATE waits, then finds no row and fails BLOB_NOT_FOUND. Rows another replica's collect holds are
 * skipped (SKIP LOCKED). SQLite serialises writers, so a push and a collect never overlap. A reference made
 * after a mark (a push of the run, say) clears it, so the grace starts again from the next mark.
 */
export const collectBlobs = async (db: Db, input: CollectBlobsInput): Promise<CollectBlobsResult> => {
  const graceMs = checkMs("graceMs", input.graceMs);
  const idleMs = checkMs("uploadIdleMs", input.uploadIdleMs);
  const limit = input.limit ?? 1000;
  if (!Number.isSafeInteger(limit) || limit <= 0) throw invalid("limit", "must be an integer > 0");
  const { d } = db;
  const out = await db.tx(async (c) => {
    await c.q(
      `UPDATE blobs SET orphaned_at = NULL WHERE sha256 IN (
         SELECT sha256 FROM blobs b WHERE b.orphaned_at IS NOT NULL AND ${liveBlob("b")}
         ORDER BY sha256 LIMIT $1 ${d.skipLocked()})`,
      [limit],
    );
    await c.q(
      `UPDATE blobs SET orphaned_at = $2 WHERE sha256 IN (
         SELECT sha256 FROM blobs b WHERE b.orphaned_at IS NULL AND NOT ${liveBlob("b")}
         ORDER BY sha256 LIMIT $1 ${d.skipLocked()})
       AND orphaned_at IS NULL`,
      [limit, c.now],
    );
    // The guard is repeated in the DELETE itself so that it is re-checked on the locked row (see above).
    const gone = await c.q(
      `DELETE FROM blobs WHERE sha256 IN (
         SELECT sha256 FROM blobs b WHERE b.orphaned_at <= $2 AND NOT ${liveBlob("b")}
         ORDER BY sha256 LIMIT $1 ${d.skipLocked()})
       AND orphaned_at <= $2 AND NOT ${liveBlob("blobs")}
       RETURNING *`,
      [limit, c.now - graceMs],
    );
    if (gone.length > 0)
      await c.q(`DELETE FROM blob_refs WHERE sha256 IN ${d.list("$1")}`, [
        d.listParam(gone.map((b) => b.sha256 as string)),
      ]);
    const abandoned = await c.q(
      `DELETE FROM blob_uploads WHERE id IN (
         SELECT id FROM blob_uploads WHERE updated_at <= $2 ORDER BY updated_at LIMIT $1 ${d.skipLocked()})
       AND updated_at <= $2
       RETURNING *`,
      [limit, c.now - idleMs],
    );
    return { deleted: gone.map(toBlob), abandoned: abandoned.map(toUpload) };
  });
  return out;
};
