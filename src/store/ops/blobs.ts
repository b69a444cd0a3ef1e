import { isSha256, UPLOAD_OFFSET_HEADER } from "../../protocol/blobs.ts";
import { FleetlinkError, invalid } from "../../protocol/errors.ts";
import type { Db } from "../dialect.ts";
import type { Row } from "../rows.ts";
import { checkId } from "../store.ts";
import type {
  BeginBlobUploadInput,
  BeginBlobUploadResult,
  BlobReader,
  BlobRecord,
  BlobUpload,
} from "../types.ts";
import { addRef, holdBlob, uploaderOwner } from "./blob-refs.ts";
import { runRow } from "./runs.ts";

// Blob rows, their uploads and who may read them. A blob_refs row says "this run (and node) may use this
// blob"; its kind says why: 'instruction' / 'reply' (a message references it: live while the message is),
// 'upload' (the run, or the node, sent or was granted the bytes), 'claim' (a node asked to upload a blob that
// was present: it may reference it in replies, but sent no bytes, so it may not read it). A node reads through
// 'instruction' and 'upload' refs only (readableBlob).

export const toBlob = (r: Row): BlobRecord => ({
  sha256: r.sha256 as string,
  size: Number(r.size),
  objectKey: r.object_key as string,
  createdAt: Number(r.created_at),
});

export const toUpload = (r: Row): BlobUpload => ({
  id: r.id as string,
  sha256: r.sha256 as string,
  size: Number(r.size),
  runId: r.run_id as string,
  nodeId: (r.node_id as string | null) ?? null,
  objectKey: r.object_key as string,
  offset: Number(r.offset),
  backendState: (r.backend_state as string | null) ?? null,
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
});

const checkSha = (v: unknown): string => {
  if (!isSha256(v)) throw invalid("sha256", "must be 64 lower-case hex digits");
  return v;
};
const checkKey = (field: string, v: unknown): string => {
  if (typeof v !== "string" || v.length === 0 || v.length > 1024)
    throw invalid(field, "must be a non-empty string of at most 1024 characters");
  return v;
};

export const beginBlobUpload = async (
  db: Db,
  input: BeginBlobUploadInput,
): Promise<BeginBlobUploadResult> => {
  const sha256 = checkSha(input.sha256);
  const { size, maxBlobBytes, runQuotaBytes } = input;
  if (!Number.isSafeInteger(size) || size < 0) throw invalid("size", "must be an integer >= 0");
  if (size > maxBlobBytes)
    throw new FleetlinkError(
      "PAYLOAD_TOO_LARGE",
      `a blob of ${size} bytes is larger than the limit of ${maxBlobBytes} bytes`,
      { field: "size" },
    );
  const runId = checkId("runId", input.runId);
  const nodeId = input.nodeId === null ? null : checkId("nodeId", input.nodeId);
  const uploadId = checkKey("uploadId", input.uploadId);
  const objectKey = checkKey("objectKey", input.objectKey);
  const { d } = db;
  const out = await db.tx(async (c): Promise<BeginBlobUploadResult> => {
    // Serialises the begins of one run on PostgreSQL: the quota sum and the resume lookup below would
    // otherwise let two racing begins both pass, or both start an upload of the same blob.
    if (d.lockKey) await c.q(d.lockKey, [`blob-run:${runId}`]);
    const run = await runRow(c, runId, d.shareLock);
    if (run.status === "finished") throw new FleetlinkError("RUN_FINISHED", `run ${runId} is finished`);
    if (nodeId !== null) {
      const [held] = await c.q(
        "SELECT 1 AS x FROM instructions WHERE run_id = $1 AND dst = $2 AND ended = 0 LIMIT 1",
        [runId, nodeId],
      );
      if (!held)
        throw new FleetlinkError(
          "FORBIDDEN",
          `node ${nodeId} has no live instruction of run ${runId}: it may not upload blobs for it`,
          { field: "runId" },
        );
    }
    const held = await holdBlob(c, sha256);
    // Present only within the run's tenant: knowing another tenant's hash must not grant its bytes (content
    // addressing is per store, trust is per tenant). Otherwise the uploader sends the bytes like anyone
    // (completing finds the blob and keeps one copy), which proves it holds them.
    const mine =
      held !== undefined &&
      (
        await c.q(
          `SELECT 1 AS x FROM blob_refs r JOIN runs ru ON ru.id = r.run_id
           WHERE r.sha256 = $1 AND ru.tenant = $2 LIMIT 1`,
          [sha256, run.tenant],
        )
      ).length > 0;
    if (mine && Number(held.size) !== size)
      throw invalid("size", `blob ${sha256} has ${Number(held.size)} bytes, not ${size}`);
    const blob = mine ? held : undefined;
    if (blob) {
      await addRef(c, {
        sha256,
        runId,
        owner: uploaderOwner(nodeId),
        kind: nodeId === null ? "upload" : "claim",
        nodeId,
      });
      return { state: "present", blob: toBlob(blob) };
    }
    const [open] = await c.q(
      `SELECT * FROM blob_uploads WHERE sha256 = $1 AND run_id = $2
         AND (node_id = CAST($3 AS TEXT) OR (node_id IS NULL AND CAST($3 AS TEXT) IS NULL))`,
      [sha256, runId, nodeId],
    );
    if (open) return { state: "uploading", upload: toUpload(open) };
    const [used] = await c.q(
      `SELECT (SELECT COALESCE(SUM(b.size), 0) FROM blobs b
                WHERE b.sha256 IN (SELECT sha256 FROM blob_refs WHERE run_id = $1))
            + (SELECT COALESCE(SUM(u.size), 0) FROM blob_uploads u WHERE u.run_id = $1) AS used`,
      [runId],
    );
    const total = Number(used?.used ?? 0) + size;
    if (total > runQuotaBytes)
      throw new FleetlinkError(
        "QUOTA_EXCEEDED",
        `run ${runId} would hold ${total} bytes of blobs, over its quota of ${runQuotaBytes} bytes`,
        { field: "size" },
      );
    const [row] = await c.q(
      `INSERT INTO blob_uploads (id, sha256, size, run_id, node_id, object_key, "offset", backend_state,
         created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, 0, NULL, $7, $7) RETURNING *`,
      [uploadId, sha256, size, runId, nodeId, objectKey, c.now],
    );
    return { state: "uploading", upload: toUpload(row!) };
  });
  db.changed();
  return out;
};

const noUpload = (id: string) =>
  new FleetlinkError("BLOB_NOT_FOUND", `no unfinished upload ${id}`, { field: "upload" });

export const getBlobUpload = async (db: Db, id: string): Promise<BlobUpload | null> => {
  checkKey("id", id);
  const [r] = await db.tx((c) => c.q("SELECT * FROM blob_uploads WHERE id = $1", [id]), "read");
  return r ? toUpload(r) : null;
};

export const recordBlobUpload = async (
  db: Db,
  id: string,
  offset: number,
  backendState: string | null,
  expectedOffset?: number,
): Promise<BlobUpload> => {
  checkKey("id", id);
  if (!Number.isSafeInteger(offset) || offset < 0) throw invalid("offset", "must be an integer >= 0");
  if (backendState !== null && typeof backendState !== "string")
    throw invalid("backendState", "must be a string or null");
  const cas = expectedOffset !== undefined;
  if (cas && (!Number.isSafeInteger(expectedOffset) || expectedOffset < 0))
    throw invalid("expectedOffset", "must be an integer >= 0");
  return db.tx(async (c) => {
    const [r] = await c.q("SELECT size FROM blob_uploads WHERE id = $1", [id]);
    if (!r) throw noUpload(id);
    if (offset > Number(r.size)) throw invalid("offset", `must be at most the upload's size ${r.size}`);
    // Compare-and-set: a writer that lost the upload to another (a replica cut off while a client resumed
    // elsewhere) must not move the offset under the new writer. The condition sits in the UPDATE itself, so
    // on PostgreSQL a racing record that commits first makes this one match no row (re-checked after the lock).
    const [u] = await c.q(
      `UPDATE blob_uploads SET "offset" = $2, backend_state = $3, updated_at = $4
       WHERE id = $1 ${cas ? `AND "offset" = $5 AND "offset" <= $2` : ""} RETURNING *`,
      cas ? [id, offset, backendState, c.now, expectedOffset] : [id, offset, backendState, c.now],
    );
    if (u) return toUpload(u);
    const [now] = await c.q('SELECT "offset" FROM blob_uploads WHERE id = $1', [id]);
    if (!now) throw noUpload(id);
    const current = Number(now.offset);
    throw new FleetlinkError(
      "CONFLICT",
      current === expectedOffset
        ? `upload ${id} is at offset ${current}: it may not move back to ${offset}`
        : `upload ${id} is at offset ${current}, not ${expectedOffset}: another writer moved it`,
      { field: UPLOAD_OFFSET_HEADER },
    );
  });
};

export const completeBlobUpload = async (
  db: Db,
  id: string,
): Promise<{ blob: BlobRecord; redundantObjectKey: string | null }> => {
  checkKey("id", id);
  const out = await db.tx(async (c) => {
    const [u] = await c.q("DELETE FROM blob_uploads WHERE id = $1 RETURNING *", [id]);
    if (!u) throw noUpload(id);
    const up = toUpload(u);
    let blob: Row | undefined;
    let redundantObjectKey: string | null = null;
    // The same blob may become visible meanwhile through another upload: the first kept wins. On PostgreSQL a
    // racing INSERT waits for the other's commit and then conflicts, and the UPDATE that follows sees its row.
    for (let attempt = 0; !blob && attempt < 3; attempt++) {
      blob = await holdBlob(c, up.sha256);
      if (blob) {
        redundantObjectKey = up.objectKey;
        break;
      }
      [blob] = await c.q(
        `INSERT INTO blobs (sha256, size, object_key, created_at, orphaned_at) VALUES ($1, $2, $3, $4, NULL)
         ON CONFLICT (sha256) DO NOTHING RETURNING *`,
        [up.sha256, up.size, up.objectKey, c.now],
      );
    }
    if (!blob) throw new FleetlinkError("INTERNAL", `blob ${up.sha256} neither inserted nor found`);
    // The uploader proved it holds the bytes: a node may now read the blob (a 'claim' becomes an 'upload').
    await addRef(
      c,
      {
        sha256: up.sha256,
        runId: up.runId,
        owner: uploaderOwner(up.nodeId),
        kind: "upload",
        nodeId: up.nodeId,
      },
      true,
    );
    return { blob: toBlob(blob), redundantObjectKey };
  });
  db.changed();
  return out;
};

export const abortBlobUpload = async (db: Db, id: string): Promise<BlobUpload | null> => {
  checkKey("id", id);
  const [r] = await db.tx((c) => c.q("DELETE FROM blob_uploads WHERE id = $1 RETURNING *", [id]));
  return r ? toUpload(r) : null;
};

export const readableBlob = async (
  db: Db,
  sha256: string,
  reader: BlobReader,
): Promise<BlobRecord | null> => {
  checkSha(sha256);
  const byRun = "runId" in reader;
  const who = byRun ? checkId("runId", reader.runId) : checkId("nodeId", reader.nodeId);
  // A node reads only what it was sent (instruction) or uploaded the bytes of. Not what it claimed, nor what it
  // referenced in a reply: a claim needs only the hash, and a claimed blob may be referenced in a reply, so a
  // reply ref would turn knowing a hash into reading any blob (review 19.3).
  const access = byRun ? "r.run_id = $2" : "r.node_id = $2 AND r.kind IN ('instruction', 'upload')";
  const [b] = await db.tx(
    (c) =>
      c.q(
        `SELECT b.* FROM blobs b WHERE b.sha256 = $1
           AND EXISTS (SELECT 1 FROM blob_refs r WHERE r.sha256 = b.sha256 AND ${access})`,
        [sha256, who],
      ),
    "read",
  );
  return b ? toBlob(b) : null;
};

export const blobStats = async (db: Db): Promise<{ blobs: number; bytes: number; uploads: number }> =>
  db.tx(async (c) => {
    const [b] = await c.q("SELECT count(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM blobs");
    const [u] = await c.q("SELECT count(*) AS n FROM blob_uploads");
    return { blobs: Number(b?.n ?? 0), bytes: Number(b?.bytes ?? 0), uploads: Number(u?.n ?? 0) };
  }, "read");
