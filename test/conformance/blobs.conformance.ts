import { createHash } from "node:crypto";
import { describe, expect, test } from "vitest";
import { blobRef } from "../../src/protocol/blobs.ts";
import { newId } from "../../src/protocol/ids.ts";
import { storeReply } from "../../src/store/store.ts";
import type { BeginBlobUploadInput, BlobUpload } from "../../src/store/types.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { type StoreFactory, useStore } from "./factory.ts";

const sha = (s: string) => createHash("sha256").update(s).digest("hex");
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const MAX = 1000;
const QUOTA = 2500;

/** Blobs: uploads, references in payloads (push and reply), who may read, garbage collection. */
export const blobConformance = (factory: StoreFactory): void => {
  describe("blobs", () => {
    const t = useStore(factory);

    const begin = (o: Partial<BeginBlobUploadInput> & { runId: string }) =>
      t.store.beginBlobUpload({
        sha256: sha("a"),
        size: 100,
        nodeId: null,
        uploadId: newId(),
        objectKey: `k/${newId()}`,
        maxBlobBytes: MAX,
        runQuotaBytes: QUOTA,
        ...o,
      });
    /** Uploads blob `s` (size 100) to the run, coordinator side, and completes it. */
    const upload = async (runId: string, s = "a", nodeId: string | null = null) => {
      const r = await begin({ runId, sha256: sha(s), nodeId });
      if (r.state === "present") return r.blob;
      await t.store.recordBlobUpload(r.upload.id, 100, null);
      return (await t.store.completeBlobUpload(r.upload.id)).blob;
    };
    const setup = async () => {
      const run = await t.store.createRun();
      const node = await t.onlineNode("b");
      return { run, node };
    };
    const ref = (s = "a") => blobRef({ sha256: sha(s), size: 100 });

    test("begin - bad input names the field and stores nothing", async () => {
      const { run } = await setup();
      await rejectsWith(begin({ runId: run.id, sha256: "ABC" }), "INVALID_ARGUMENT", "sha256");
      await rejectsWith(begin({ runId: run.id, size: -1 }), "INVALID_ARGUMENT", "size");
      await rejectsWith(begin({ runId: run.id, size: 1.5 }), "INVALID_ARGUMENT", "size");
      const big = await rejectsWith(begin({ runId: run.id, size: MAX + 1 }), "PAYLOAD_TOO_LARGE", "size");
      expect(big.message).toContain(`${MAX} bytes`);
      await rejectsWith(begin({ runId: newId() }), "RUN_NOT_FOUND");
      await rejectsWith(begin({ runId: "x" }), "INVALID_ARGUMENT", "runId");
      expect(await t.store.blobStats()).toEqual({ blobs: 0, bytes: 0, uploads: 0 });
      await t.store.transitionRun(run.id, "pending", "finished");
      await rejectsWith(begin({ runId: run.id }), "RUN_FINISHED");
    });

    test("begin - a node may upload only for a run it holds a live instruction of", async () => {
      const { run, node } = await setup();
      await rejectsWith(begin({ runId: run.id, nodeId: node.id }), "FORBIDDEN", "runId");
      const [i] = await t.store.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: 60_000 }]);
      expect((await begin({ runId: run.id, nodeId: node.id })).state).toBe("uploading");
      await storeReply(t.store, { runId: run.id, nodeId: node.id, replyTo: i!.id });
      await rejectsWith(begin({ runId: run.id, nodeId: node.id, sha256: sha("b") }), "FORBIDDEN", "runId");
    });

    test("upload - resume answers the same upload; complete makes the blob visible to its run only", async () => {
      const { run } = await setup();
      const other = await t.store.createRun();
      const a = await begin({ runId: run.id });
      expect(a.state).toBe("uploading");
      const up = (a as { upload: BlobUpload }).upload;
      expect(up).toMatchObject({ offset: 0, size: 100, runId: run.id, nodeId: null, backendState: null });
      await t.store.recordBlobUpload(up.id, 40, "parts:1");
      const again = await begin({ runId: run.id });
      expect(again).toEqual({
        state: "uploading",
        upload: { ...up, offset: 40, backendState: "parts:1", updatedAt: up.updatedAt },
      });
      expect(await t.store.getBlobUpload(up.id)).toMatchObject({ offset: 40, backendState: "parts:1" });
      await rejectsWith(t.store.recordBlobUpload(up.id, 101, null), "INVALID_ARGUMENT", "offset");
      await rejectsWith(t.store.recordBlobUpload("nope", 1, null), "BLOB_NOT_FOUND", "upload");
      expect(await t.store.readableBlob(sha("a"), { runId: run.id })).toBeNull();
      const done = await t.store.completeBlobUpload(up.id);
      expect(done).toMatchObject({
        blob: { sha256: sha("a"), size: 100, objectKey: up.objectKey },
        redundantObjectKey: null,
      });
      expect(await t.store.getBlobUpload(up.id)).toBeNull();
      await rejectsWith(t.store.completeBlobUpload(up.id), "BLOB_NOT_FOUND", "upload");
      expect(await t.store.readableBlob(sha("a"), { runId: run.id })).toMatchObject({ sha256: sha("a") });
      expect(await t.store.readableBlob(sha("a"), { runId: other.id })).toBeNull();
      expect(await t.store.blobStats()).toEqual({ blobs: 1, bytes: 100, uploads: 0 });
      // Present now: one round trip, and the other run may now reference and read it.
      expect(await begin({ runId: other.id })).toMatchObject({
        state: "present",
        blob: { sha256: sha("a") },
      });
      expect(await t.store.readableBlob(sha("a"), { runId: other.id })).not.toBeNull();
    });

    test("begin - a blob is present only within the run's tenant and at its size; another tenant must send the bytes", async () => {
      const { run } = await setup();
      await upload(run.id, "a");
      const mine = await t.store.createRun({ tenant: run.tenant });
      await rejectsWith(begin({ runId: mine.id, size: 99 }), "INVALID_ARGUMENT", "size");
      expect((await begin({ runId: mine.id })).state).toBe("present");
      // Tenant b knows the hash: it gets an upload (no grant), and no read until it sent the bytes.
      const theirs = await t.store.createRun({ tenant: "team-b" });
      const b = await begin({ runId: theirs.id });
      expect(b.state).toBe("uploading");
      // A wrong size is not checked against another tenant's blob (that would say it exists).
      expect((await begin({ runId: theirs.id, sha256: sha("a"), size: 99 })).state).toBe("uploading");
      expect(await t.store.readableBlob(sha("a"), { runId: theirs.id })).toBeNull();
      const up = (b as { upload: BlobUpload }).upload;
      await t.store.recordBlobUpload(up.id, 100, null);
      const done = await t.store.completeBlobUpload(up.id);
      // One copy kept: the second upload's object is the redundant one.
      expect(done.redundantObjectKey).toBe(up.objectKey);
      expect(await t.store.readableBlob(sha("a"), { runId: theirs.id })).toMatchObject({ sha256: sha("a") });
      expect(await t.store.blobStats()).toMatchObject({ blobs: 1, bytes: 100 });
    });

    test("upload - two uploads of one blob racing: one blob kept, the other's object named redundant", async () => {
      const { run } = await setup();
      const other = await t.store.createRun();
      const a = (await begin({ runId: run.id })) as { upload: BlobUpload };
      const b = (await begin({ runId: other.id })) as { upload: BlobUpload };
      expect(a.upload.id).not.toBe(b.upload.id);
      const [x, y] = await Promise.all([
        t.store.completeBlobUpload(a.upload.id),
        (await t.replica()).completeBlobUpload(b.upload.id),
      ]);
      expect(x.blob).toEqual(y.blob);
      const keys = [x.redundantObjectKey, y.redundantObjectKey];
      expect(keys.filter((k) => k === null)).toHaveLength(1);
      expect(keys).toContain(
        x.blob.objectKey === a.upload.objectKey ? b.upload.objectKey : a.upload.objectKey,
      );
      expect(await t.store.blobStats()).toEqual({ blobs: 1, bytes: 100, uploads: 0 });
      expect(await t.store.readableBlob(sha("a"), { runId: other.id })).not.toBeNull();
    });

    test("upload - quota counts distinct blobs of the run and its open uploads", async () => {
      const { run } = await setup();
      await begin({ runId: run.id, sha256: sha("q1"), size: 1000 });
      await begin({ runId: run.id, sha256: sha("q2"), size: 1000 });
      const e = await rejectsWith(
        begin({ runId: run.id, sha256: sha("q3"), size: 501 }),
        "QUOTA_EXCEEDED",
        "size",
      );
      expect(e.message).toContain(`${QUOTA} bytes`);
      expect((await begin({ runId: run.id, sha256: sha("q3"), size: 500 })).state).toBe("uploading");
      // Resuming an upload already counted is not refused.
      expect((await begin({ runId: run.id, sha256: sha("q1"), size: 1000 })).state).toBe("uploading");
      expect((await t.store.blobStats()).uploads).toBe(3);
    });

    test("upload - abort removes it (idempotent); an idle one is abandoned by collect", async () => {
      const { run } = await setup();
      const a = (await begin({ runId: run.id })) as { upload: BlobUpload };
      expect((await t.store.abortBlobUpload(a.upload.id))?.id).toBe(a.upload.id);
      expect(await t.store.abortBlobUpload(a.upload.id)).toBeNull();
      const b = (await begin({ runId: run.id })) as { upload: BlobUpload };
      t.clock.advance(500);
      await t.store.recordBlobUpload(b.upload.id, 10, null);
      t.clock.advance(999);
      expect((await t.store.collectBlobs({ graceMs: 0, uploadIdleMs: 1000 })).abandoned).toEqual([]);
      t.clock.advance(1);
      const got = await t.store.collectBlobs({ graceMs: 0, uploadIdleMs: 1000 });
      expect(got.abandoned.map((u) => u.id)).toEqual([b.upload.id]);
      expect(await t.store.getBlobUpload(b.upload.id)).toBeNull();
    });

    test("push - an unknown or foreign ref fails BLOB_NOT_FOUND naming the field, and stores nothing", async () => {
      const { run, node } = await setup();
      const other = await t.store.createRun();
      await upload(other.id, "a");
      const bad = await rejectsWith(
        t.store.pushInstructions(run.id, [
          { dst: node.id, method: "m", ttlMs: 60_000, payload: json({ ok: 1 }) },
          { dst: node.id, method: "m", ttlMs: 60_000, payload: json({ model: { w: ref("a") } }) },
        ]),
        "BLOB_NOT_FOUND",
        "items[1].payload.model.w",
      );
      expect(bad.message).toContain(`sha256:${sha("a")}`);
      await rejectsWith(
        t.store.pushInstructions(run.id, [
          { dst: node.id, method: "m", ttlMs: 60_000, payload: json([1, ref("nope")]) },
        ]),
        "BLOB_NOT_FOUND",
        "items[0].payload[1]",
      );
      await rejectsWith(
        t.store.pushInstructions(run.id, [
          { dst: node.id, method: "m", ttlMs: 60_000, payload: json({ x: { $blob: "sha256:zz", size: 1 } }) },
        ]),
        "INVALID_ARGUMENT",
        "items[0].payload.x",
      );
      expect(await t.store.listInstructions(run.id)).toEqual([]);
      // Not JSON, though it holds the marker: plain bytes, no references.
      const raw = new TextEncoder().encode('\x00"$blob"\x01');
      expect(
        await t.store.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: 60_000, payload: raw }]),
      ).toHaveLength(1);
    });

    test("push - a ref of the run is accepted and lets the node read the blob; other nodes may not", async () => {
      const { run, node } = await setup();
      const stranger = await t.onlineNode("s");
      await upload(run.id, "a");
      expect(await t.store.readableBlob(sha("a"), { nodeId: node.id })).toBeNull();
      await t.store.pushInstructions(run.id, [
        { dst: node.id, method: "m", ttlMs: 60_000, payload: json({ w: ref("a") }) },
      ]);
      expect(await t.store.readableBlob(sha("a"), { nodeId: node.id })).toMatchObject({ sha256: sha("a") });
      expect(await t.store.readableBlob(sha("a"), { nodeId: stranger.id })).toBeNull();
      // A message of the run referencing it lets a second push reference it too.
      await t.store.pushInstructions(run.id, [
        { dst: stranger.id, method: "m", ttlMs: 60_000, payload: json([ref("a"), ref("a")]) },
      ]);
      await rejectsWith(t.store.readableBlob("x", { runId: run.id }), "INVALID_ARGUMENT", "sha256");
    });

    test("reply - a ref the node may not use makes an error reply BLOB_NOT_FOUND; a permitted one is kept", async () => {
      const { run, node } = await setup();
      await upload(run.id, "a");
      const [i, j, k] = await t.store.pushInstructions(run.id, [
        { dst: node.id, method: "m", ttlMs: 60_000, payload: json({ w: ref("a") }) },
        { dst: node.id, method: "m", ttlMs: 60_000 },
        { dst: node.id, method: "m", ttlMs: 60_000 },
      ]);
      const [ok, forbidden] = await t.store.storeReplies([
        { runId: run.id, nodeId: node.id, replyTo: i!.id, payload: json({ out: ref("a") }) },
        { runId: run.id, nodeId: node.id, replyTo: j!.id, payload: json({ out: ref("b") }) },
      ]);
      expect(ok).toMatchObject({ ok: true, reply: { error: null } });
      expect(forbidden).toMatchObject({ ok: true, reply: { error: { code: "FLEETLINK_E_BLOB_NOT_FOUND" } } });
      const f = (forbidden as { reply: { error: { message: string }; payload: Uint8Array } }).reply;
      expect(f.error.message).toContain(`sha256:${sha("b")}`);
      expect(f.payload).toHaveLength(0);
      // A node that claimed a present blob (sent no bytes) may reference it, but not read it.
      const other = await t.onlineNode("o");
      const [m] = await t.store.pushInstructions(run.id, [{ dst: other.id, method: "m", ttlMs: 60_000 }]);
      expect((await begin({ runId: run.id, nodeId: other.id, sha256: sha("a") })).state).toBe("present");
      expect(await t.store.readableBlob(sha("a"), { nodeId: other.id })).toBeNull();
      const [claimed] = await t.store.storeReplies([
        { runId: run.id, nodeId: other.id, replyTo: m!.id, payload: json({ out: ref("a") }) },
      ]);
      expect(claimed).toMatchObject({ ok: true, reply: { error: null } });
      // Its reply ref does not let it read either (review 19.3: claim → reply → read was a hole).
      expect(await t.store.readableBlob(sha("a"), { nodeId: other.id })).toBeNull();
      // A node's own upload: readable by it and by the run, and usable in its reply.
      await upload(run.id, "n", node.id);
      expect(await t.store.readableBlob(sha("n"), { nodeId: node.id })).not.toBeNull();
      expect(await t.store.readableBlob(sha("n"), { runId: run.id })).not.toBeNull();
      const [own] = await t.store.storeReplies([
        { runId: run.id, nodeId: node.id, replyTo: k!.id, payload: json({ out: ref("n") }) },
      ]);
      expect(own).toMatchObject({ ok: true, reply: { error: null } });
    });

    test("reply - a malformed reference becomes an error reply naming it; a retransmission is a duplicate", async () => {
      const { run, node } = await setup();
      const [i] = await t.store.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: 60_000 }]);
      const id = newId();
      const send = () =>
        t.store.storeReplies([
          {
            id,
            runId: run.id,
            nodeId: node.id,
            replyTo: i!.id,
            payload: json({ x: { $blob: "sha256:no", size: 1 } }),
          },
        ]);
      const [first] = await send();
      expect(first).toMatchObject({
        ok: true,
        duplicate: false,
        reply: { id, error: { code: "FLEETLINK_E_BLOB_NOT_FOUND" } },
      });
      expect((first as { reply: { error: { message: string } } }).reply.error.message).toContain(
        "reply.payload.x",
      );
      expect(await send()).toMatchObject([{ ok: true, duplicate: true }]);
    });

    test("push - refs in a group-committed batch: the bad push fails alone, the others store their refs", async () => {
      const { run, node } = await setup();
      await upload(run.id, "a");
      const [good, bad] = await t.store.pushBatch([
        {
          runId: run.id,
          items: [{ dst: node.id, method: "m", ttlMs: 60_000, payload: json({ w: ref("a") }) }],
        },
        {
          runId: run.id,
          items: [{ dst: node.id, method: "m", ttlMs: 60_000, payload: json({ w: ref("b") }) }],
        },
      ]);
      expect(good).toMatchObject({ ok: true });
      expect(bad).toMatchObject({
        ok: false,
        error: { code: "FLEETLINK_E_BLOB_NOT_FOUND", field: "items[0].payload.w" },
      });
      expect(await t.store.readableBlob(sha("a"), { nodeId: node.id })).not.toBeNull();
    });

    test("collect - a blob lives while referenced, then for the grace; a ref after marking unmarks", async () => {
      const { run, node } = await setup();
      const blob = await upload(run.id, "a");
      const collect = () => t.store.collectBlobs({ graceMs: 1000, uploadIdleMs: 3_600_000 });
      const [i] = await t.store.pushInstructions(run.id, [
        { dst: node.id, method: "m", ttlMs: 60_000, payload: json({ w: ref("a") }) },
      ]);
      t.clock.advance(5000);
      expect((await collect()).deleted).toEqual([]);
      // The instruction's reply references it too: live until claimed.
      await storeReply(t.store, {
        runId: run.id,
        nodeId: node.id,
        replyTo: i!.id,
        payload: json({ r: ref("a") }),
      });
      t.clock.advance(5000);
      expect((await collect()).deleted).toEqual([]);
      await t.store.claimReplies({ runId: run.id });
      expect((await collect()).deleted).toEqual([]); // marked now
      t.clock.advance(999);
      // A push referencing it after the mark unmarks it; it ends (withdrawn), so the grace starts again.
      const [j] = await t.store.pushInstructions(run.id, [
        { dst: node.id, method: "m", ttlMs: 60_000, payload: json({ w: ref("a") }) },
      ]);
      await t.store.withdrawInstructions(run.id, [j!.id]);
      t.clock.advance(1);
      expect((await collect()).deleted).toEqual([]); // marked again now
      t.clock.advance(999);
      expect((await collect()).deleted).toEqual([]);
      t.clock.advance(1);
      expect((await collect()).deleted).toEqual([blob]);
      expect(await t.store.blobStats()).toEqual({ blobs: 0, bytes: 0, uploads: 0 });
      expect(await t.store.readableBlob(sha("a"), { runId: run.id })).toBeNull();
      // Gone: a push referencing it fails, and it may be uploaded afresh.
      await rejectsWith(
        t.store.pushInstructions(run.id, [
          { dst: node.id, method: "m", ttlMs: 60_000, payload: json({ w: ref("a") }) },
        ]),
        "BLOB_NOT_FOUND",
        "items[0].payload.w",
      );
      expect((await begin({ runId: run.id })).state).toBe("uploading");
      await rejectsWith(
        t.store.collectBlobs({ graceMs: -1, uploadIdleMs: 0 }),
        "INVALID_ARGUMENT",
        "graceMs",
      );
    });

    test("cleanup - a deleted message's blob refs go with it; the run's upload ref stays", async () => {
      const { run, node } = await setup();
      await upload(run.id, "a");
      const [i] = await t.store.pushInstructions(run.id, [
        { dst: node.id, method: "m", ttlMs: 60_000, payload: json({ w: ref("a") }) },
      ]);
      await storeReply(t.store, { runId: run.id, nodeId: node.id, replyTo: i!.id });
      await t.store.claimReplies({ runId: run.id });
      expect(await t.store.readableBlob(sha("a"), { nodeId: node.id })).not.toBeNull();
      t.clock.advance(10_000);
      // A live instruction keeps the run from being abandoned (and deleted) by the cleanup.
      await t.store.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: 60_000 }]);
      expect((await t.store.cleanup(1000)).instructions).toBe(1);
      expect(await t.store.readableBlob(sha("a"), { nodeId: node.id })).toBeNull();
      expect(await t.store.readableBlob(sha("a"), { runId: run.id })).not.toBeNull();
    });

    test("cleanup - a deleted run's blob refs go with it", async () => {
      const { run } = await setup();
      await upload(run.id, "a");
      await t.store.transitionRun(run.id, "pending", "finished");
      t.clock.advance(10_000);
      expect((await t.store.cleanup(1000)).runs).toBe(1);
      const again = await t.store.createRun();
      // The blob still exists, but no run has a ref to it: a new run cannot reference it without uploading.
      const node = await t.onlineNode("c");
      await rejectsWith(
        t.store.pushInstructions(again.id, [
          { dst: node.id, method: "m", ttlMs: 60_000, payload: json(ref("a")) },
        ]),
        "BLOB_NOT_FOUND",
        "items[0].payload",
      );
      expect((await t.store.collectBlobs({ graceMs: 0, uploadIdleMs: 0 })).deleted).toHaveLength(1);
    });
  });
};
