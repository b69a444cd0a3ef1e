// file:// blob storage. An upload writes `<key>.partial` at explicit positions, fsyncs before an offset is
// recorded (a recorded offset is never ahead of the disk), and is renamed to `<key>` once complete and verified.
import { createHash, type Hash } from "node:crypto";
import { constants, createReadStream } from "node:fs";
import { type FileHandle, mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { FileStore } from "../../checkpoint/file-store.ts";
import { FleetlinkError } from "../../protocol/errors.ts";
import type { BlobUpload } from "../../store/types.ts";
import type { BlobStorage, Durable, UploadWriter } from "./storage.ts";
import { uploadIdOf } from "./storage.ts";

const PARTIAL = ".partial";
/** Bytes written between two fsyncs (and recorded offsets) during one PUT. (8 MiB) */
export const FILE_SYNC_BYTES = 8 * 1024 * 1024;

export class FileBlobStorage implements BlobStorage {
  readonly canPresign = false;
  readonly url: string;
  readonly root: string;
  constructor(url: string, root: string) {
    this.url = url;
    this.root = root;
  }

  /** Same URL forms as checkpoint file stores: `file:///abs/dir`, `file://./rel/dir`. */
  static open(url: string): FileBlobStorage {
    return new FileBlobStorage(url, FileStore.open(url).root);
  }

  private path(objectKey: string): string {
    if (!/^blobs\/[0-9a-f]{2}\/[0-9a-f]{64}\.[0-9A-Za-z_-]+$/.test(objectKey))
      throw new FleetlinkError("INTERNAL", `not a blob object key: ${JSON.stringify(objectKey)}`);
    return join(this.root, objectKey);
  }

  async openWriter(upload: BlobUpload, hash: Hash | null): Promise<UploadWriter & { hash(): Hash | null }> {
    const file = `${this.path(upload.objectKey)}${PARTIAL}`;
    await mkdir(dirname(file), { recursive: true });
    // Never append mode ("a"): on Linux it ignores the position of every write, so a late write of a replica
    // whose PUT was cut would land at the end of the file, after the bytes of the replica that took over.
    const fh = await open(file, constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      const { size } = await fh.stat();
      if (size < upload.offset)
        throw new FleetlinkError(
          "INTERNAL",
          `upload ${upload.id}: ${size} bytes on disk, ${upload.offset} recorded (the blob directory lost data)`,
        );
      // Bytes past the recorded offset came from a PUT cut before its fsync was recorded: not ours to keep.
      if (size > upload.offset) await fh.truncate(upload.offset);
      // No running hash here (another replica took the earlier PUTs, or a restart): rebuild it from disk.
      const durable = hash ?? (await hashPrefix(file, upload.offset));
      return new FileWriter(fh, upload.offset, durable);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async finish(upload: BlobUpload): Promise<boolean> {
    const target = this.path(upload.objectKey);
    // The running hash covers the bytes this replica wrote; the file must hold exactly those (a stray write of
    // another replica past the end, or a file cut short, would make a blob whose bytes are not its name).
    const st = await stat(`${target}${PARTIAL}`).catch(() => null);
    if (!st || st.size !== upload.size) {
      await rm(`${target}${PARTIAL}`, { force: true });
      return false;
    }
    await rename(`${target}${PARTIAL}`, target);
    await syncDir(dirname(target));
    return true;
  }

  async abort(upload: BlobUpload): Promise<void> {
    const target = this.path(upload.objectKey);
    await rm(`${target}${PARTIAL}`, { force: true });
    await rm(target, { force: true });
  }

  async has(objectKey: string): Promise<boolean> {
    return (await stat(this.path(objectKey)).catch(() => null))?.isFile() ?? false;
  }

  async read(objectKey: string, start = 0, end?: number): Promise<Readable> {
    const s = createReadStream(this.path(objectKey), { start, ...(end === undefined ? {} : { end }) });
    // Open errors surface here, not midway through a response.
    await new Promise<void>((resolve, reject) => {
      s.once("open", () => resolve());
      s.once("error", (e: NodeJS.ErrnoException) =>
        reject(
          e.code === "ENOENT"
            ? new FleetlinkError("BLOB_NOT_FOUND", "the blob's bytes are gone", { field: "sha256" })
            : e,
        ),
      );
    });
    return s;
  }

  async delete(objectKeys: readonly string[]): Promise<void> {
    for (const k of objectKeys) await rm(this.path(k), { force: true });
  }

  presign(): Promise<string> {
    return Promise.reject(
      new FleetlinkError("CONFLICT", "presigned downloads are not enabled (file:// blob storage)"),
    );
  }

  async sweepOrphans(known: (uploadId: string) => Promise<boolean>, olderThanMs: number): Promise<number> {
    const base = join(this.root, "blobs");
    let removed = 0;
    const dirs = await readdir(base).catch(() => [] as string[]);
    for (const d of dirs) {
      const names = await readdir(join(base, d)).catch(() => [] as string[]);
      for (const n of names) {
        if (!n.endsWith(PARTIAL)) continue;
        const p = join(base, d, n);
        const st = await stat(p).catch(() => null);
        const id = uploadIdOf(n);
        if (!st || !id || Date.now() - st.mtimeMs < olderThanMs) continue;
        if (await known(id)) continue;
        await rm(p, { force: true });
        removed++;
      }
    }
    return removed;
  }

  async close(): Promise<void> {}
}

class FileWriter implements UploadWriter {
  private written: number;
  private synced: number;
  /** Covers `[0, written)`; `durable` covers `[0, synced)`. */
  private readonly pending: Hash;
  private durable: Hash;
  private closed = false;
  private readonly fh: FileHandle;

  constructor(fh: FileHandle, offset: number, hash: Hash) {
    this.fh = fh;
    this.written = this.synced = offset;
    this.durable = hash;
    this.pending = hash.copy();
  }

  hash(): Hash {
    return this.durable;
  }

  async write(chunk: Buffer): Promise<Durable | null> {
    let done = 0;
    while (done < chunk.length) {
      const { bytesWritten } = await this.fh.write(chunk, done, chunk.length - done, this.written + done);
      done += bytesWritten;
    }
    this.pending.update(chunk);
    this.written += chunk.length;
    return this.written - this.synced >= FILE_SYNC_BYTES ? this.flush() : null;
  }

  async flush(): Promise<Durable> {
    if (this.written > this.synced) {
      await this.fh.datasync();
      this.synced = this.written;
      this.durable = this.pending.copy();
    }
    return { offset: this.synced, state: null };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

const hashPrefix = async (file: string, length: number): Promise<Hash> => {
  const h = createHash("sha256");
  if (length === 0) return h;
  await pipeline(
    createReadStream(file, { start: 0, end: length - 1 }),
    async (src: AsyncIterable<Buffer>) => {
      for await (const c of src) h.update(c);
    },
  );
  return h;
};

const syncDir = async (dir: string): Promise<void> => {
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
};
