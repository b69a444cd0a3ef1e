// Blob storage backends (docs/blobs.md): where a blob's bytes live, as opposed to the store, which holds only
// metadata and references. One interface, two backends: file:// (default, next to the hub's data) and s3://.
// The S3 backend (and the AWS SDK) loads on first use, as checkpoint/open.ts does for checkpoint stores.
import type { Hash } from "node:crypto";
import type { Readable } from "node:stream";
import type { BlobUpload } from "../../store/types.ts";

/**
 * The writing end of one upload on this replica, opened per PUT. It owns the running hash: it feeds it only
 * with bytes it made durable, in order, so the hash always covers exactly `[0, durable offset)`.
 */
export interface UploadWriter {
  /** Takes the next bytes. Resolves with a durable point when some were made durable (the caller records it). */
  write(chunk: Buffer): Promise<Durable | null>;
  /**
   * Makes what can be made durable durable: file: everything written (fsync); S3: the buffered tail only if it
   * is the blob's last part (`final`), else the tail is dropped (a part under 5 MiB cannot be sent).
   */
  flush(final: boolean): Promise<Durable>;
  /** Releases what the writer holds (file descriptor, part buffer); idempotent. */
  close(): Promise<void>;
}

/** Bytes `[0, offset)` are durable; `state` is the backend's own record of them (S3: upload id and parts). */
export interface Durable {
  offset: number;
  state: string | null;
}

export interface BlobStorage {
  readonly url: string;
  /** True when `presign` works (S3). */
  readonly canPresign: boolean;
  /**
   * Opens the upload for writing at `upload.offset` (bytes past it from an earlier cut PUT are discarded).
   * `hash` covers `[0, upload.offset)`, or is null when this replica has none: the file backend rebuilds it by
   * reading the durable prefix back; the S3 backend cannot (parts are unreadable until assembled), so the
   * writer's `hash()` is then null and `finish` verifies by reading the assembled object back.
   */
  openWriter(upload: BlobUpload, hash: Hash | null): Promise<UploadWriter & { hash(): Hash | null }>;
  /**
   * All bytes are durable (state as last recorded): assembles the object under `upload.objectKey`. With
   * `expectSha256`, reads the object back and verifies it (S3 without a running hash): false on a mismatch,
   * after deleting the object. False too when the bytes held are not `upload.size` long (file: partial removed).
   */
  finish(upload: BlobUpload, expectSha256?: string): Promise<boolean>;
  /** Removes an unfinished upload's bytes (partial file, S3 multipart upload) and any assembled object. */
  abort(upload: BlobUpload): Promise<void>;
  /** True when the assembled object exists (an upload finished in storage whose store commit may have failed). */
  has(objectKey: string): Promise<boolean>;
  /** The object's bytes from `start` to `end` inclusive (default: to the last byte), streamed. */
  read(objectKey: string, start?: number, end?: number): Promise<Readable>;
  /** Deletes objects; a missing one is not an error. */
  delete(objectKeys: readonly string[]): Promise<void>;
  /** A URL that GETs the object (Range works) until `expiresInS` seconds from now. */
  presign(objectKey: string, expiresInS: number): Promise<string>;
  /**
   * Removes leftovers of writers killed mid-write: partial files older than `olderThanMs` whose upload the
   * store no longer knows (`known(id)` false). Returns how many were removed.
   */
  sweepOrphans(known: (uploadId: string) => Promise<boolean>, olderThanMs: number): Promise<number>;
  close(): Promise<void>;
}

/** `blobs/<sha[0:2]>/<sha>.<uploadId>`: unique per upload, so deleting one upload's object never hits another's. */
export const objectKeyOf = (sha256: string, uploadId: string): string =>
  `blobs/${sha256.slice(0, 2)}/${sha256}.${uploadId}`;

/** The upload id at the end of an object key (or of its partial file's name). */
export const uploadIdOf = (objectKey: string): string | null => {
  const m = /\.([0-9A-Za-z_-]+)(\.partial)?$/.exec(objectKey);
  return m ? m[1]! : null;
};
