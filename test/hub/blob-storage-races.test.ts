// The file:// backend when two replicas write one upload (review issue 19, finding 1): a replica whose PUT was
// cut still has a write in flight when another replica takes over at the recorded offset. Positional writes
// must land where they were aimed (no append mode), and a partial file of the wrong length is never made a blob.
// And the S3 backend's multipart bookkeeping (finding 12): a multipart upload created before its first part
// failed is recorded, so the upload's abort can name it.
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { resolveS3Config } from "../../src/checkpoint/s3-config.ts";
import { FileBlobStorage } from "../../src/hub/blobs/file-storage.ts";
import { S3BlobStorage } from "../../src/hub/blobs/s3-storage.ts";
import { objectKeyOf } from "../../src/hub/blobs/storage.ts";
import type { BlobUpload } from "../../src/store/types.ts";
import { type S3rver, startS3rver } from "../helpers/s3rver.ts";
import { ADMIN, begin, bytes, createRun, putBytes, sha, startBlobHub } from "./blobs-helpers.ts";

const MiB = 1024 * 1024;

const uploadOf = (data: Uint8Array, id: string, offset = 0): BlobUpload => ({
  id,
  sha256: sha(data),
  size: data.length,
  runId: "r",
  nodeId: null,
  objectKey: objectKeyOf(sha(data), id),
  offset,
  backendState: null,
  createdAt: 0,
  updatedAt: 0,
});

const readAll = async (s: AsyncIterable<Buffer>): Promise<Buffer> => {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c);
  return Buffer.concat(parts);
};

let dir: string;
let s3: S3rver;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "fleetlink-blob-races-"));
  s3 = await startS3rver("blob-races");
});
afterAll(async () => {
  await s3.stop();
  rmSync(dir, { recursive: true, force: true });
});
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});
const openS3 = () => {
  const url = `s3://${s3.bucket}/races?endpoint=${s3.endpoint}&partSizeBytes=${5 * MiB}`;
  const st = new S3BlobStorage(
    url,
    resolveS3Config(url, { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }),
  );
  cleanups.push(() => st.close());
  return st;
};

describe("file blob storage with two writers", () => {
  test("a late write of a cut replica lands at its own position, not after the bytes of the replica that took over", async () => {
    const storage = FileBlobStorage.open(`file://${dir}`);
    const data = bytes(4 * MiB);
    const u = uploadOf(data, "race1");
    // Replica A: wrote 2 MiB, of which 1 MiB was recorded durable before its PUT was cut.
    const a = await storage.openWriter(u, null);
    await a.write(data.subarray(0, 2 * MiB));
    // Replica B takes the client's next PUT at the recorded offset 1 MiB (truncating A's unrecorded tail) ...
    const b = await storage.openWriter({ ...u, offset: MiB }, null);
    // ... while A's last in-flight write (aimed at 2 MiB) completes.
    await a.write(data.subarray(2 * MiB, 3 * MiB));
    await a.close();
    await b.write(data.subarray(MiB));
    const d = await b.flush(true);
    expect(d.offset).toBe(data.length);
    expect(b.hash()!.copy().digest("hex")).toBe(sha(data));
    await b.close();
    expect(await storage.finish(u)).toBe(true);
    expect(sha(await readAll(await storage.read(u.objectKey)))).toBe(sha(data));
  });

  test("finish refuses a partial whose length is not the blob's size, and removes it", async () => {
    const storage = FileBlobStorage.open(`file://${dir}`);
    const data = bytes(MiB + 3);
    const u = uploadOf(data, "race2");
    const w = await storage.openWriter(u, null);
    await w.write(data);
    await w.flush(true);
    await w.close();
    // A stray write past the end (a bug, or another process) must not become part of a visible blob.
    appendFileSync(join(dir, `${u.objectKey}.partial`), Buffer.from("xyz"));
    expect(await storage.finish(u)).toBe(false);
    expect(await storage.has(u.objectKey)).toBe(false);
    await expect(storage.read(u.objectKey)).rejects.toMatchObject({ kind: "BLOB_NOT_FOUND" });
  });
});

describe("s3 blob storage bookkeeping", () => {
  test("a multipart upload created before its first part failed is recorded, and the next PUT goes on with it", async () => {
    const storage = openS3();
    const send = storage.client.send.bind(storage.client);
    let failParts = 1;
    // The object store refuses the first part (after CreateMultipartUpload succeeded).
    storage.client.send = ((cmd: { constructor: { name: string } }, ...rest: unknown[]) => {
      if (cmd.constructor.name === "UploadPartCommand" && failParts-- > 0)
        return Promise.reject(Object.assign(new Error("slow down"), { name: "ServiceUnavailable" }));
      return (send as (...a: unknown[]) => Promise<unknown>)(cmd, ...rest);
    }) as typeof storage.client.send;
    const { url, store } = await startBlobHub({ blobStore: storage }, cleanups);
    const run = await createRun(url);
    const data = bytes(6 * MiB);
    const b = await begin(url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: sha(data), size: data.length });
    const path = `/v1/runs/${run}/blobs/uploads/${b.body.upload.id}`;
    const p = await putBytes(url, path, ADMIN, 0, data);
    expect(p.status).toBe(503);
    const u = await store.getBlobUpload(b.body.upload.id);
    expect(u!.offset).toBe(0);
    const state = JSON.parse(u!.backendState!) as { uploadId: string; parts: unknown[] };
    expect(state.uploadId).toEqual(expect.any(String));
    expect(state.parts).toEqual([]);
    // The same multipart upload goes on; the blob completes.
    const again = await putBytes(url, path, ADMIN, 0, data);
    expect(again.body).toMatchObject({ complete: true });
  }, 60_000);

  test("sweepOrphans on a store that cannot list multipart uploads (s3rver) sweeps nothing and does not fail", async () => {
    const storage = openS3();
    expect(await storage.sweepOrphans(async () => false, 0)).toBe(0);
    expect(await storage.sweepOrphans(async () => false, 0)).toBe(0);
  });
});
