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
  });
};
