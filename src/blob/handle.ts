import { createReadStream } from "node:fs";
import { copyFile, readFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { type BlobInfo, type BlobRefJson, blobRef } from "../protocol/blobs.ts";
import { FleetlinkError } from "../protocol/errors.ts";

/**
 * What a handle needs to reach its bytes: a verified local copy (the client's content-addressed cache),
 * held in use until `release` so cache eviction never removes a file being read.
 */
export interface BlobReader {
  /** Downloads the blob if needed; resolves with the path of its complete, verified file, marked in use. */
  acquire(blob: BlobInfo, signal?: AbortSignal): Promise<string>;
  /** Ends one `acquire`'s use of the file. */
  release(blob: BlobInfo): void;
}

export interface BlobStreamOptions {
  /** First byte to read. (Default: 0) */
  start?: number;
  /** Last byte to read, inclusive. (Default: the last byte) */
  end?: number;
  signal?: AbortSignal;
}

/**
 * A blob held by the hub, by its sha256 and size. Lazy: nothing is downloaded until the bytes are asked for,
 * then they go through the local cache once (a second `bytes()` or `stream()` reads the cached file).
 * In a payload it stands for its reference: pass it back in a push or a result and no byte is sent again.
 */
export class FleetBlob implements BlobInfo {
  readonly sha256: string;
  readonly size: number;
  private readonly reader: BlobReader | null;

  constructor(blob: BlobInfo, reader: BlobReader | null) {
    this.sha256 = blob.sha256;
    this.size = blob.size;
    this.reader = reader;
  }

  /** The reference object that stands for this blob in a payload (also what JSON.stringify writes). */
  toJSON(): BlobRefJson {
    return blobRef(this);
  }

  /** All the bytes in memory: for blobs known to be small enough; `stream()` or `saveTo()` otherwise. */
  async bytes(opts: { signal?: AbortSignal } = {}): Promise<Buffer> {
    return this.use(opts.signal, (path) => readFile(path));
  }

  /** The bytes as a stream, read from the verified local copy (downloaded first if needed). */
  stream(opts: BlobStreamOptions = {}): Readable {
    const self = this;
    return Readable.from(
      (async function* () {
        const reader = self.need();
        const path = await reader.acquire(self, opts.signal);
        try {
          if (self.size === 0) return;
          yield* createReadStream(path, { start: opts.start, end: opts.end, signal: opts.signal });
        } finally {
          reader.release(self);
        }
      })(),
      { objectMode: false },
    );
  }

  /** Copies the bytes to `path` (downloaded through the cache first if needed). */
  async saveTo(path: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    await this.use(opts.signal, (p) => copyFile(p, path));
  }

  private need(): BlobReader {
    if (!this.reader)
      throw new FleetlinkError(
        "INVALID_ARGUMENT",
        `blob ${this.sha256} has no client to download it through`,
      );
    return this.reader;
  }

  private async use<T>(signal: AbortSignal | undefined, f: (path: string) => Promise<T>): Promise<T> {
    const reader = this.need();
    const path = await reader.acquire(this, signal);
    try {
      return await f(path);
    } finally {
      reader.release(this);
    }
  }
}

/** What a handler can do with blobs (`ctx.blobs`). */
export interface HandlerBlobs {
  /**
   * Uploads bytes, a stream or a file to this instruction's run and returns its handle: return it (anywhere
   * in the result) to send a large result without holding it in memory. Returned bytes are uploaded anyway.
   */
  put(source: Uint8Array | Readable | { path: string }, opts?: { signal?: AbortSignal }): Promise<FleetBlob>;
  /** A handle on a blob this node may read (its instruction referenced it), downloaded on first use. */
  get(blob: BlobInfo): FleetBlob;
}
