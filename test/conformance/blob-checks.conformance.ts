import { createHash } from "node:crypto";
import { describe, expect, test } from "vitest";
import { blobRef } from "../../src/protocol/blobs.ts";
import { newId } from "../../src/protocol/ids.ts";
import type { BeginBlobUploadInput, BlobUpload } from "../../src/store/types.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { type StoreFactory, useStore } from "./factory.ts";

const sha = (s: string) => createHash("sha256").update(s).digest("hex");
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

/** Blob guards found in review: the upload offset as a compare-and-set, who may read, ref sizes. */
export const blobCheckConformance = (factory: StoreFactory): void => {
  describe("blob checks", () => {
    const t = useStore(factory);

    const begin = (o: Partial<BeginBlobUploadInput> & { runId: string }) =>
      t.store.beginBlobUpload({
        sha256: sha("a"),
        size: 100,
        nodeId: null,
        uploadId: newId(),
        objectKey: `k/${newId()}`,
        maxBlobBytes: 1000,
        runQuotaBytes: 10_000,
        ...o,
      });

    /** Uploads blob `s` (size 100) to the run, coordinator side. */
    const upload = async (runId: string, s: string) => {
      const r = (await begin({ runId, sha256: sha(s) })) as { upload: BlobUpload };
      await t.store.recordBlobUpload(r.upload.id, 100, null);
      await t.store.completeBlobUpload(r.upload.id);
    };
    const ref = (s: string, size = 100) => blobRef({ sha256: sha(s), size });

    test("record - with an expected offset it is a compare-and-set: a stale or backward record changes nothing", async () => {
      const run = await t.store.createRun();
      const { upload: up } = (await begin({ runId: run.id })) as { upload: BlobUpload };
      expect(await t.store.recordBlobUpload(up.id, 40, "s1", 0)).toMatchObject({
        offset: 40,
        backendState: "s1",
      });
      // A writer that started at 0 (a replica cut off while the client resumed elsewhere) is late.
      const stale = await rejectsWith(
        t.store.recordBlobUpload(up.id, 30, null, 0),
        "CONFLICT",
        "upload-offset",
      );
      expect(stale.message).toContain("offset 40");
      const back = await rejectsWith(
        t.store.recordBlobUpload(up.id, 30, null, 40),
        "CONFLICT",
        "upload-offset",
      );
      expect(back.message).toContain("offset 40");
      expect(await t.store.getBlobUpload(up.id)).toMatchObject({ offset: 40, backendState: "s1" });
      // The same offset is not smaller: a writer may record new backend state without progress.
      expect(await t.store.recordBlobUpload(up.id, 40, "s2", 40)).toMatchObject({
        offset: 40,
        backendState: "s2",
      });
      await rejectsWith(t.store.recordBlobUpload(up.id, 50, null, -1), "INVALID_ARGUMENT", "expectedOffset");
      await rejectsWith(t.store.recordBlobUpload(up.id, 50, null, 1.5), "INVALID_ARGUMENT", "expectedOffset");
      await rejectsWith(t.store.recordBlobUpload(up.id, 101, null, 40), "INVALID_ARGUMENT", "offset");
      await rejectsWith(t.store.recordBlobUpload("nope", 1, null, 0), "BLOB_NOT_FOUND", "upload");
      expect(await t.store.getBlobUpload(up.id)).toMatchObject({ offset: 40, backendState: "s2" });
      // Without an expected offset it is set as given (the old contract).
      expect((await t.store.recordBlobUpload(up.id, 10, null)).offset).toBe(10);
    });

    test("record - two writers racing from one offset: exactly one moves it", async () => {
      const run = await t.store.createRun();
      const { upload: up } = (await begin({ runId: run.id })) as { upload: BlobUpload };
      const other = await t.replica();
      for (let round = 0; round < 5; round++) {
        const from = (await t.store.getBlobUpload(up.id))!.offset;
        const got = await Promise.allSettled([
          t.store.recordBlobUpload(up.id, from + 5, "a", from),
          other.recordBlobUpload(up.id, from + 7, "b", from),
        ]);
        const won = got.filter((g) => g.status === "fulfilled");
        expect(won).toHaveLength(1);
        const lost = got.find((g) => g.status === "rejected") as PromiseRejectedResult;
        expect(lost.reason).toMatchObject({ code: "FLEETLINK_E_CONFLICT", field: "upload-offset" });
        const now = (await t.store.getBlobUpload(up.id))!;
        expect(now.offset).toBe(now.backendState === "a" ? from + 5 : from + 7);
      }
    });

    test("read - a node that claims a foreign blob and replies with it still may not read it", async () => {
      // Run A holds a blob; a node of run R learns only its hash.
      const a = await t.store.createRun();
      const up = (await begin({ runId: a.id, sha256: sha("secret") })) as { upload: BlobUpload };
      await t.store.recordBlobUpload(up.upload.id, 100, null);
      await t.store.completeBlobUpload(up.upload.id);
      const r = await t.store.createRun();
      const node = await t.onlineNode("n");
      const [i] = await t.store.pushInstructions(r.id, [{ dst: node.id, method: "m", ttlMs: 60_000 }]);
      // Begin of a present blob: a claim, one round trip, no bytes sent.
      expect((await begin({ runId: r.id, nodeId: node.id, sha256: sha("secret") })).state).toBe("present");
      expect(await t.store.readableBlob(sha("secret"), { nodeId: node.id })).toBeNull();
      const [reply] = await t.store.storeReplies([
        {
          runId: r.id,
          nodeId: node.id,
          replyTo: i!.id,
          payload: json({ out: blobRef({ sha256: sha("secret"), size: 100 }) }),
        },
      ]);
      expect(reply).toMatchObject({ ok: true, reply: { error: null } });
      expect(await t.store.readableBlob(sha("secret"), { nodeId: node.id })).toBeNull();
      // Sent to it by an instruction, it may read it (and after its own upload, which the claim does not fake).
      await t.store.pushInstructions(r.id, [
        {
          dst: node.id,
          method: "m",
          ttlMs: 60_000,
          payload: json({ w: blobRef({ sha256: sha("secret"), size: 100 }) }),
        },
      ]);
      expect(await t.store.readableBlob(sha("secret"), { nodeId: node.id })).not.toBeNull();
    });

    test("push - a ref whose size is not its blob's is refused naming the field, and stores nothing", async () => {
      const run = await t.store.createRun();
      const node = await t.onlineNode("n");
      await upload(run.id, "a");
      const push = (payload: unknown) =>
        t.store.pushInstructions(run.id, [
          { dst: node.id, method: "m", ttlMs: 60_000 },
          { dst: node.id, method: "m", ttlMs: 60_000, payload: json(payload) },
        ]);
      const e = await rejectsWith(push({ w: ref("a", 99) }), "INVALID_ARGUMENT", "items[1].payload.w");
      expect(e.message).toContain("100 bytes");
      // The same blob twice: the first with its size, the second with another one.
      await rejectsWith(
        push({ ok: ref("a"), bad: [ref("a", 1_000_000)] }),
        "INVALID_ARGUMENT",
        "items[1].payload.bad[0]",
      );
      // A blob the run may not use is not found, whatever the size (its size is not told).
      const other = await t.store.createRun();
      await upload(other.id, "b");
      const nf = await rejectsWith(push({ w: ref("b", 5) }), "BLOB_NOT_FOUND", "items[1].payload.w");
      expect(nf.message).not.toMatch(/\b100 bytes\b|size 100\b/);
      expect(await t.store.listInstructions(run.id)).toEqual([]);
      expect(await t.store.readableBlob(sha("a"), { nodeId: node.id })).toBeNull();
      expect(await push({ w: ref("a"), again: ref("a") })).toHaveLength(2);
    });

    test("reply - a ref whose size is not its blob's makes an error reply BLOB_NOT_FOUND naming it", async () => {
      const run = await t.store.createRun();
      const node = await t.onlineNode("n");
      await upload(run.id, "a");
      const [i, j] = await t.store.pushInstructions(run.id, [
        { dst: node.id, method: "m", ttlMs: 60_000, payload: json({ w: ref("a") }) },
        { dst: node.id, method: "m", ttlMs: 60_000, payload: json({ w: ref("a") }) },
      ]);
      const [bad, good] = await t.store.storeReplies([
        { runId: run.id, nodeId: node.id, replyTo: i!.id, payload: json({ out: [ref("a"), ref("a", 7)] }) },
        { runId: run.id, nodeId: node.id, replyTo: j!.id, payload: json({ out: ref("a") }) },
      ]);
      expect(bad).toMatchObject({ ok: true, reply: { error: { code: "FLEETLINK_E_BLOB_NOT_FOUND" } } });
      const r = (bad as { reply: { error: { message: string }; payload: Uint8Array } }).reply;
      expect(r.error.message).toContain("payload.out[1]");
      expect(r.error.message).toContain("size 7");
      expect(r.payload).toHaveLength(0);
      expect(good).toMatchObject({ ok: true, reply: { error: null } });
    });

    test("refs - a key spelled with JSON escapes is a reference too", async () => {
      const run = await t.store.createRun();
      const node = await t.onlineNode("n");
      await upload(run.id, "a");
      const escaped = (s: string, key = "\\u0024blob") =>
        new TextEncoder().encode(`{"w":{"${key}":"sha256:${sha(s)}","size":100}}`);
      // Not uploaded to the run: refused, though a byte search for "$blob" finds nothing.
      await rejectsWith(
        t.store.pushInstructions(run.id, [
          { dst: node.id, method: "m", ttlMs: 60_000, payload: escaped("b") },
        ]),
        "BLOB_NOT_FOUND",
        "items[0].payload.w",
      );
      await rejectsWith(
        t.store.pushInstructions(run.id, [
          { dst: node.id, method: "m", ttlMs: 60_000, payload: escaped("b", "$\\u0062lob") },
        ]),
        "BLOB_NOT_FOUND",
        "items[0].payload.w",
      );
      // The run's own blob: accepted and recorded (the node may read it; the ref keeps it alive).
      const [i] = await t.store.pushInstructions(run.id, [
        { dst: node.id, method: "m", ttlMs: 60_000, payload: escaped("a") },
      ]);
      expect(await t.store.readableBlob(sha("a"), { nodeId: node.id })).not.toBeNull();
      const [reply] = await t.store.storeReplies([
        { runId: run.id, nodeId: node.id, replyTo: i!.id, payload: escaped("b") },
      ]);
      expect(reply).toMatchObject({ ok: true, reply: { error: { code: "FLEETLINK_E_BLOB_NOT_FOUND" } } });
      // Escapes elsewhere, no reference: stored as sent.
      const plain = new TextEncoder().encode('{"name":"caf\\u00e9"}');
      expect(
        await t.store.pushInstructions(run.id, [
          { dst: node.id, method: "m", ttlMs: 60_000, payload: plain },
        ]),
      ).toHaveLength(1);
    });
  });
};
