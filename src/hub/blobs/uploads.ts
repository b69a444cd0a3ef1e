// The hub's side of a blob transfer, shared by the coordinator and node routes: begin (or find present),
// append bytes at the durable offset, verify the whole blob's sha256, and only then make it visible.
import { createHash, type Hash } from "node:crypto";
import type { Readable } from "node:stream";
import type { BeginUploadAnswer, UploadStatus } from "../../protocol/blobs.ts";
import { FleetlinkError, invalid } from "../../protocol/errors.ts";
import { newId } from "../../protocol/ids.ts";
import type { Store } from "../../store/store.ts";
import type { BlobUpload } from "../../store/types.ts";
import { type BlobStorage, type Durable, objectKeyOf } from "./storage.ts";

/** Counters the hub exports (metrics.ts); every hook is optional. */
export interface BlobObserver {
  uploadedBytes?(n: number): void;
  downloadedBytes?(n: number): void;
  uploadCompleted?(): void;
  /** An upload or PUT refused: `reason` is the error code (QUOTA_EXCEEDED, INVALID_ARGUMENT, …). */
  uploadRefused?(reason: string): void;
  blobsDeleted?(n: number): void;
}

/** Who drives an upload: a run's coordinator (nodeId null) or a node. */
export interface Uploader {
  runId?: string;
  nodeId: string | null;
}

/** Running hashes kept per replica; past this many unfinished uploads the oldest are rebuilt on demand. */
const MAX_HASHES = 10_000;

export const uploadStatus = (u: BlobUpload, complete = false): UploadStatus => ({
  id: u.id,
  offset: complete ? u.size : u.offset,
  size: u.size,
  complete,
});

export interface BlobUploadsOptions {
  store: Store;
  storage: BlobStorage;
  maxBlobBytes: number;
  runQuotaBytes: number;
  /** PUTs this replica streams at once; one more is refused 429 RATE_LIMITED (clients retry). (Default: 32) */
  maxConcurrentPuts?: number;
  observe?: BlobObserver;
}

/** Each S3 PUT buffers up to one part (8 MiB): 32 bound a replica's upload buffers to about 256 MiB. */
export const DEFAULT_MAX_CONCURRENT_PUTS = 32;

export class BlobUploads {
  /** The sha256 state of `[0, offset)` of uploads whose PUTs ran here. */
  private readonly hashes = new Map<string, { offset: number; hash: Hash }>();
  /** Uploads with a PUT running here: a second one would interleave bytes. */
  private readonly busy = new Set<string>();

  private readonly o: BlobUploadsOptions;
  constructor(o: BlobUploadsOptions) {
    this.o = o;
  }

  async begin(
    body: unknown,
    who: { runId: string; nodeId: string | null },
  ): Promise<{ status: 200 | 201; answer: BeginUploadAnswer }> {
    const b = (typeof body === "object" && body !== null ? body : {}) as { sha256?: unknown; size?: unknown };
    if (typeof b.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(b.sha256))
      throw invalid("sha256", "must be the blob's sha256 as 64 lower-case hex digits");
    if (!Number.isSafeInteger(b.size) || (b.size as number) < 0)
      throw invalid("size", "must be the blob's size in bytes, an integer ≥ 0");
    const sha256 = b.sha256;
    const size = b.size as number;
    const uploadId = newId();
    const r = await this.refusing(() =>
      this.o.store.beginBlobUpload({
        sha256,
        size,
        runId: who.runId,
        nodeId: who.nodeId,
        uploadId,
        objectKey: objectKeyOf(sha256, uploadId),
        maxBlobBytes: this.o.maxBlobBytes,
        runQuotaBytes: this.o.runQuotaBytes,
      }),
    );
    if (r.state === "present") return { status: 200, answer: { state: "present", blob: { sha256, size } } };
    return {
      status: 201,
      answer: { state: "uploading", blob: { sha256, size }, upload: uploadStatus(r.upload) },
    };
  }

  /** The upload, if `who` drives it; BLOB_NOT_FOUND (field `upload`) otherwise, as for an unknown one. */
  async find(id: string, who: Uploader): Promise<BlobUpload> {
    const u = await this.o.store.getBlobUpload(id);
    if (!u || u.nodeId !== who.nodeId || (who.runId !== undefined && u.runId !== who.runId))
      throw new FleetlinkError(
        "BLOB_NOT_FOUND",
        `no unfinished upload ${id} (it completed, ended, or is not yours)`,
        {
          field: "upload",
        },
      );
    return u;
  }

  /**
   * Checks a PUT before its body is read: its offset is the durable one, and its declared length fits the
   * blob. Returns the upload.
   */
  async check(id: string, who: Uploader, offsetHeader: unknown, contentLength: unknown): Promise<BlobUpload> {
    const u = await this.find(id, who);
    const offset =
      typeof offsetHeader === "string" && /^\d{1,16}$/.test(offsetHeader) ? Number(offsetHeader) : NaN;
    if (!Number.isSafeInteger(offset))
      throw invalid("upload-offset", "the Upload-Offset header must be a byte offset");
    if (offset !== u.offset)
      throw new FleetlinkError(
        "CONFLICT",
        `upload-offset: the upload's durable offset is ${u.offset}, not ${offset}: send from there`,
        { field: "upload-offset" },
      );
    const room = u.size - offset;
    if (typeof contentLength === "string" && Number(contentLength) > room) {
      this.o.observe?.uploadRefused?.("PAYLOAD_TOO_LARGE");
      throw new FleetlinkError(
        "PAYLOAD_TOO_LARGE",
        `body: Content-Length ${contentLength} runs past the blob's size ${u.size}: at most ${room} bytes may follow offset ${offset}`,
        { field: "body" },
      );
    }
    return u;
  }

  /** Takes a PUT slot for the upload, synchronously (two PUTs checked at once cannot both pass). */
  private reserve(id: string): void {
    if (this.busy.has(id))
      throw new FleetlinkError("CONFLICT", "upload: another PUT of this upload is in progress", {
        field: "upload",
      });
    const max = this.o.maxConcurrentPuts ?? DEFAULT_MAX_CONCURRENT_PUTS;
    if (this.busy.size >= max) {
      this.o.observe?.uploadRefused?.("RATE_LIMITED");
      throw new FleetlinkError(
        "RATE_LIMITED",
        `upload: this hub replica already streams ${max} blob PUTs (blobMaxConcurrentPuts): retry shortly`,
        { field: "upload" },
      );
    }
    this.busy.add(id);
  }

  /**
   * Appends `body` at the upload's durable offset, recording progress as it becomes durable, and completes
   * the blob when the last byte arrived and the whole hashes to its sha256. Reads `body` with backpressure
   * (one chunk at a time, awaiting storage), never holding more than a part.
   */
  async put(upload: BlobUpload, body: Readable): Promise<UploadStatus> {
    const { store, storage } = this.o;
    this.reserve(upload.id);
    let u = upload;
    let w: Awaited<ReturnType<BlobStorage["openWriter"]>> | undefined;
    const record = async (d: Durable) => {
      // A new backend state is recorded even at the same offset (S3: a multipart upload created, its first part
      // failed): unrecorded, nothing would ever abort it.
      if (d.offset < u.offset || (d.offset === u.offset && d.state === u.backendState)) return;
      // Compare-and-set from the offset this PUT holds: a replica whose PUT was cut and whose late flush lands
      // after another replica took over must not move the offset under it (CONFLICT: the client resumes).
      u = await store.recordBlobUpload(u.id, d.offset, d.state, u.offset);
      const h = w?.hash();
      if (h) this.remember(u.id, d.offset, h.copy());
    };
    try {
      // All bytes arrived earlier but the blob is not visible: finishing made the object and the store's commit
      // failed. The object was verified before it was made: commit again.
      if (u.offset === u.size && (await storage.has(u.objectKey))) return await this.commit(u);
      const known = this.hashes.get(u.id);
      w = await storage.openWriter(
        u,
        known && known.offset === u.offset
          ? known.hash.copy()
          : // A fresh upload: the hash of nothing, so S3 need not read the whole blob back to verify it.
            u.offset === 0
            ? createHash("sha256")
            : null,
      );
      let received = u.offset;
      try {
        // Not destroyed on a throw: a 413 must still be answered on this connection.
        for await (const chunk of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
          if (received + chunk.length > u.size) {
            this.o.observe?.uploadRefused?.("PAYLOAD_TOO_LARGE");
            throw new FleetlinkError(
              "PAYLOAD_TOO_LARGE",
              `body: runs past the blob's size ${u.size} (at most ${u.size - upload.offset} bytes may follow offset ${upload.offset})`,
              { field: "body" },
            );
          }
          received += chunk.length;
          this.o.observe?.uploadedBytes?.(chunk.length);
          const d = await w.write(chunk);
          if (d) await record(d);
        }
        await record(await w.flush(received === u.size));
      } catch (e) {
        // A cut PUT keeps what can be made durable; the client asks for the offset and goes on from there.
        await w
          .flush(false)
          .then(record)
          .catch(() => {});
        throw e;
      }
      if (u.offset < u.size) return uploadStatus(u);
      return await this.complete(u, w.hash());
    } finally {
      await w?.close();
      this.busy.delete(upload.id);
    }
  }

  private async complete(u: BlobUpload, hash: Hash | null): Promise<UploadStatus> {
    const { store, storage } = this.o;
    this.hashes.delete(u.id);
    const mismatch = async () => {
      await storage.abort(u);
      await store.abortBlobUpload(u.id);
      this.o.observe?.uploadRefused?.("INVALID_ARGUMENT");
      return invalid(
        "sha256",
        `the bytes do not make up the declared blob (sha256 ${u.sha256}, ${u.size} bytes): the upload was removed`,
      );
    };
    if (hash && hash.copy().digest("hex") !== u.sha256) throw await mismatch();
    if (!(await storage.finish(u, hash ? undefined : u.sha256))) throw await mismatch();
    return this.commit(u);
  }

  /** The verified object exists: makes the blob visible in the store. */
  private async commit(u: BlobUpload): Promise<UploadStatus> {
    const { store, storage } = this.o;
    let done: Awaited<ReturnType<Store["completeBlobUpload"]>>;
    try {
      done = await store.completeBlobUpload(u.id);
    } catch (e) {
      // Collected meanwhile (idle past the limit): its object must not outlive it. Any other failure (the store
      // unreachable) keeps the object: the client's next PUT at offset == size commits again (put above).
      if (e instanceof FleetlinkError && e.kind === "BLOB_NOT_FOUND")
        await storage.delete([u.objectKey]).catch(() => {});
      throw e;
    }
    // The same blob became visible through another upload first: ours is the spare copy.
    if (done.redundantObjectKey) await storage.delete([done.redundantObjectKey]);
    this.o.observe?.uploadCompleted?.();
    return uploadStatus(u, true);
  }

  /** The collector removed these uploads: their running hashes go too. */
  forget(ids: readonly string[]): void {
    for (const id of ids) this.hashes.delete(id);
  }

  private remember(id: string, offset: number, hash: Hash): void {
    this.hashes.delete(id);
    this.hashes.set(id, { offset, hash });
    if (this.hashes.size > MAX_HASHES) this.hashes.delete(this.hashes.keys().next().value!);
  }

  /** Runs a store call, counting a refusal by its code. */
  private async refusing<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      if (e instanceof FleetlinkError) this.o.observe?.uploadRefused?.(e.kind);
      throw e;
    }
  }
}
