// s3:// blob storage: an upload is an S3 multipart upload of fixed-size parts. At most one part per upload is
// buffered in memory; a part is durable once S3 acknowledged it, and its ETag goes into the upload's recorded
// state, so any replica can continue or complete it. A PUT cut midway loses only its unsent tail.
import { createHash, type Hash } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { resolveS3Config, type S3Config } from "../../checkpoint/s3-config.ts";
import { s3Client, s3Error } from "../../checkpoint/s3-store.ts";
import { FleetlinkError } from "../../protocol/errors.ts";
import type { BlobUpload } from "../../store/types.ts";
import { type BlobStorage, type Durable, type UploadWriter, uploadIdOf } from "./storage.ts";

/** What the store keeps of a multipart upload between PUTs (`backendState`). */
interface PartsState {
  uploadId: string;
  parts: { n: number; etag: string }[];
}

const parseState = (s: string | null): PartsState | null => (s ? (JSON.parse(s) as PartsState) : null);

export class S3BlobStorage implements BlobStorage {
  readonly canPresign = true;
  readonly client: S3Client;
  readonly url: string;
  readonly config: S3Config;
  /** False once the store answered that it cannot list multipart uploads. */
  private listsMultipart = true;

  constructor(url: string, config: S3Config) {
    this.url = url;
    this.config = config;
    this.client = s3Client(config);
  }

  static open(url: string): S3BlobStorage {
    return new S3BlobStorage(url, resolveS3Config(url));
  }

  key(objectKey: string): string {
    return this.config.prefix + objectKey;
  }

  async openWriter(upload: BlobUpload, hash: Hash | null): Promise<UploadWriter & { hash(): Hash | null }> {
    // The recorded offset is the end of the acknowledged parts: a hash that covers it is still right.
    return new S3Writer(this, upload, parseState(upload.backendState), hash);
  }

  async finish(upload: BlobUpload, expectSha256?: string): Promise<boolean> {
    const state = parseState(upload.backendState);
    const Key = this.key(upload.objectKey);
    try {
      if (!state || state.parts.length === 0) {
        // An empty blob: S3 wants at least one part, so it is one empty PutObject.
        if (state) await this.abortParts(Key, state.uploadId);
        await this.client.send(
          new PutObjectCommand({ Bucket: this.config.bucket, Key, Body: new Uint8Array() }),
        );
      } else
        await this.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.config.bucket,
            Key,
            UploadId: state.uploadId,
            MultipartUpload: { Parts: state.parts.map((p) => ({ PartNumber: p.n, ETag: p.etag })) },
          }),
        );
    } catch (e) {
      throw s3Error(e, "complete", upload.objectKey);
    }
    if (expectSha256 === undefined) return true;
    // No running hash survived (the parts came through other replicas or before a restart): read it back.
    const h = createHash("sha256");
    await pipeline(await this.read(upload.objectKey), async (src: AsyncIterable<Buffer>) => {
      for await (const c of src) h.update(c);
    });
    if (h.digest("hex") === expectSha256) return true;
    await this.delete([upload.objectKey]);
    return false;
  }

  private async abortParts(Key: string, UploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.config.bucket, Key, UploadId }));
    } catch (e) {
      // Already aborted (NoSuchUpload, 404) or completed (S3: 404; s3rver: MethodNotAllowed): nothing to remove.
      const name = (e as { name?: string }).name;
      if (name === "NoSuchUpload" || name === "MethodNotAllowed") return;
      const err = s3Error(e, "abort", Key);
      if (!(err instanceof FleetlinkError && err.kind === "CHECKPOINT_NOT_FOUND")) throw err;
    }
  }

  async abort(upload: BlobUpload): Promise<void> {
    const state = parseState(upload.backendState);
    if (state) await this.abortParts(this.key(upload.objectKey), state.uploadId);
    await this.delete([upload.objectKey]);
  }

  async has(objectKey: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key: this.key(objectKey) }));
      return true;
    } catch (e) {
      const err = s3Error(e, "head", objectKey);
      if (err instanceof FleetlinkError && err.kind === "CHECKPOINT_NOT_FOUND") return false;
      throw err;
    }
  }

  async read(objectKey: string, start = 0, end?: number): Promise<Readable> {
    const range = start > 0 || end !== undefined ? `bytes=${start}-${end ?? ""}` : undefined;
    let body: unknown;
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.config.bucket, Key: this.key(objectKey), Range: range }),
      );
      body = res.Body;
    } catch (e) {
      const err = s3Error(e, "get", objectKey);
      if (err instanceof FleetlinkError && err.kind === "CHECKPOINT_NOT_FOUND")
        throw new FleetlinkError("BLOB_NOT_FOUND", "the blob's bytes are gone", { field: "sha256" });
      throw err;
    }
    if (!(body instanceof Readable)) throw new Error("S3 GetObject returned no Node.js stream");
    return body;
  }

  async delete(objectKeys: readonly string[]): Promise<void> {
    for (let i = 0; i < objectKeys.length; i += 1000) {
      const batch = objectKeys.slice(i, i + 1000).map((k) => ({ Key: this.key(k) }));
      try {
        await this.client.send(
          new DeleteObjectsCommand({ Bucket: this.config.bucket, Delete: { Objects: batch, Quiet: true } }),
        );
      } catch (e) {
        throw s3Error(e, "delete", objectKeys[i]!);
      }
    }
  }

  async presign(objectKey: string, expiresInS: number): Promise<string> {
    const cmd = new GetObjectCommand({ Bucket: this.config.bucket, Key: this.key(objectKey) });
    return getSignedUrl(this.client, cmd, { expiresIn: expiresInS });
  }

  /**
   * Aborts multipart uploads under the blob prefix older than `olderThanMs` whose upload row is gone: a writer
   * killed (or failing) before its multipart id was recorded leaves one that the row's abort cannot name.
   */
  async sweepOrphans(known: (uploadId: string) => Promise<boolean>, olderThanMs: number): Promise<number> {
    if (!this.listsMultipart) return 0;
    const Bucket = this.config.bucket;
    const Prefix = this.key("blobs/");
    let removed = 0;
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    for (;;) {
      let page: ListMultipartUploadsCommandOutput;
      try {
        page = await this.client.send(
          new ListMultipartUploadsCommand({ Bucket, Prefix, KeyMarker, UploadIdMarker }),
        );
      } catch (e) {
        // Some S3-compatible stores (s3rver among them) do not list multipart uploads: nothing to sweep there
        // (their lifecycle rule, docs/blobs.md, is the backstop), and no warning every collection round.
        if ((e as { name?: string }).name === "NotImplemented") {
          this.listsMultipart = false;
          return removed;
        }
        throw s3Error(e, "list multipart uploads", "blobs/");
      }
      for (const up of page.Uploads ?? []) {
        if (!up.Key || !up.UploadId) continue;
        if (up.Initiated && Date.now() - up.Initiated.getTime() < olderThanMs) continue;
        const id = uploadIdOf(up.Key);
        if (!id || (await known(id))) continue;
        await this.abortParts(up.Key, up.UploadId);
        removed++;
      }
      if (!page.IsTruncated) return removed;
      KeyMarker = page.NextKeyMarker;
      UploadIdMarker = page.NextUploadIdMarker;
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

class S3Writer implements UploadWriter {
  private buf: Buffer | null = null;
  private filled = 0;
  private offset: number;
  private readonly s: S3BlobStorage;
  private readonly upload: BlobUpload;
  private state: PartsState | null;
  private readonly running: Hash | null;

  constructor(s: S3BlobStorage, upload: BlobUpload, state: PartsState | null, running: Hash | null) {
    this.s = s;
    this.upload = upload;
    this.state = state;
    this.running = running;
    this.offset = upload.offset;
  }

  hash(): Hash | null {
    return this.running;
  }

  private partSize(): number {
    return Math.min(this.s.config.partSizeBytes, this.upload.size - this.offset);
  }

  async write(chunk: Buffer): Promise<Durable | null> {
    let durable: Durable | null = null;
    let at = 0;
    while (at < chunk.length) {
      // The route never passes bytes beyond the declared size; a bug that did must not spin here.
      if (this.partSize() <= 0) throw new FleetlinkError("INTERNAL", "bytes past the blob's size");
      this.buf ??= Buffer.allocUnsafe(this.partSize());
      const n = Math.min(this.buf.length - this.filled, chunk.length - at);
      chunk.copy(this.buf, this.filled, at, at + n);
      this.filled += n;
      at += n;
      if (this.filled === this.buf.length && this.buf.length > 0) durable = await this.sendPart();
    }
    return durable;
  }

  private async sendPart(): Promise<Durable> {
    const body = this.buf!.subarray(0, this.filled);
    const Key = this.s.key(this.upload.objectKey);
    const Bucket = this.s.config.bucket;
    try {
      if (!this.state) {
        const r = await this.s.client.send(new CreateMultipartUploadCommand({ Bucket, Key }));
        this.state = { uploadId: r.UploadId!, parts: [] };
      }
      const n = this.state.parts.length + 1;
      const r = await this.s.client.send(
        new UploadPartCommand({ Bucket, Key, UploadId: this.state.uploadId, PartNumber: n, Body: body }),
      );
      this.state = { ...this.state, parts: [...this.state.parts, { n, etag: r.ETag! }] };
    } catch (e) {
      throw s3Error(e, "upload part", this.upload.objectKey);
    }
    this.running?.update(body);
    this.offset += body.length;
    this.buf = null;
    this.filled = 0;
    return { offset: this.offset, state: JSON.stringify(this.state) };
  }

  async flush(final: boolean): Promise<Durable> {
    if (final && this.filled > 0) return this.sendPart();
    // A tail under a part's size cannot be sent as a part (except the last): it is dropped, and re-sent.
    this.buf = null;
    this.filled = 0;
    return { offset: this.offset, state: this.state ? JSON.stringify(this.state) : null };
  }

  async close(): Promise<void> {
    this.buf = null;
  }
}
