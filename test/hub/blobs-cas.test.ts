// Two replicas writing one upload (review of issue 19, finding 1, hub part), with their BlobUploads over one
// real SQLite store and one file:// directory: replica A's PUT is cut while its bytes are unflushed, the client
// resumes on replica B, and A's late flush must not move the recorded offset under B.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { afterEach, describe, expect, test } from "vitest";
import { FileBlobStorage } from "../../src/hub/blobs/file-storage.ts";
import { BlobUploads } from "../../src/hub/blobs/uploads.ts";
import { openStore } from "../../src/store/open.ts";
import { bytes, sha } from "./blobs-helpers.ts";

const MiB = 1024 * 1024;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const readAll = async (s: AsyncIterable<Buffer>): Promise<Buffer> => {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c);
  return Buffer.concat(parts);
};

describe("blob uploads on two replicas", () => {
  test("a cut replica's late flush is refused (compare-and-set) and the offset stays the one the resuming replica recorded", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fleetlink-blobs-cas-"));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const store = await openStore(`sqlite:${join(dir, "fleet.db")}`);
    cleanups.push(() => store.close());
    const storage = FileBlobStorage.open(`file://${dir}/objects`);
    const opts = { store, storage, maxBlobBytes: 64 * MiB, runQuotaBytes: 64 * MiB };
    const a = new BlobUploads(opts);
    const b = new BlobUploads(opts);
    const run = await store.createRun();
    const data = bytes(4 * MiB);
    const begun = await a.begin({ sha256: sha(data), size: data.length }, { runId: run.id, nodeId: null });
    if (begun.answer.state !== "uploading") throw new Error("expected a new upload");
    const id = begun.answer.upload.id;
    const who = { runId: run.id, nodeId: null };

    // Replica A receives 2 MiB (written, not yet fsynced nor recorded: under FILE_SYNC_BYTES).
    const bodyA = new PassThrough();
    const putA = a.put(await a.check(id, who, "0", undefined), bodyA);
    putA.catch(() => {});
    bodyA.write(data.subarray(0, 2 * MiB));
    const partial = join(dir, "objects", `${(await store.getBlobUpload(id))!.objectKey}.partial`);
    for (let i = 0; i < 100 && (statSync(partial, { throwIfNoEntry: false })?.size ?? 0) < 2 * MiB; i++)
      await sleep(10);
    expect(statSync(partial).size).toBe(2 * MiB);

    // The client, cut off from A, resumes on replica B from the recorded offset 0 and sends 1 MiB.
    const atB = await b.put(await b.check(id, who, "0", undefined), Readable.from([data.subarray(0, MiB)]));
    expect(atB).toMatchObject({ offset: MiB, complete: false });

    // A's connection finally breaks: its flush makes its 2 MiB durable and tries to record them.
    bodyA.destroy(new Error("connection reset"));
    await expect(putA).rejects.toThrow();
    expect((await store.getBlobUpload(id))!.offset).toBe(MiB);

    // The client goes on at B from 1 MiB; the blob is whole.
    const done = await b.put(
      await b.check(id, who, String(MiB), undefined),
      Readable.from([data.subarray(MiB)]),
    );
    expect(done).toMatchObject({ offset: data.length, complete: true });
    const blob = await store.readableBlob(sha(data), { runId: run.id });
    expect(sha(await readAll(await storage.read(blob!.objectKey)))).toBe(sha(data));
  });
});
