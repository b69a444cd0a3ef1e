// The file:// backend when two replicas write one upload (review issue 19, finding 1): a replica whose PUT was
// cut still has a write in flight when another replica takes over at the recorded offset. Positional writes
// must land where they were aimed (no append mode), and a partial file of the wrong length is never made a blob.
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FileBlobStorage } from "../../src/hub/blobs/file-storage.ts";
import { objectKeyOf } from "../../src/hub/blobs/storage.ts";
import type { BlobUpload } from "../../src/store/types.ts";
import { bytes, sha } from "./blobs-helpers.ts";

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
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "fleetlink-blob-races-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

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
