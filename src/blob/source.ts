import { createHash, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { unlink } from "node:fs/promises";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { invalid } from "../protocol/errors.ts";

/** What can be uploaded: bytes in memory, a stream (spooled to a temp file so it can be resumed), or a file. */
export type BlobSource = Uint8Array | Readable | { path: string };

/** A source ready to send: hashed, sized, and re-readable from any offset. */
export interface PreparedSource {
  sha256: string;
  size: number;
  /** The bytes from `offset` up to `end` (exclusive; default: the end of the source). */
  from(offset: number, end?: number): Uint8Array | Readable;
  /** Removes what preparing made (a spooled temp file). */
  dispose(): Promise<void>;
}

/** A Transform that hashes and counts what passes through it. */
export const hasher = (
  hash = createHash("sha256"),
): Transform & { hash: ReturnType<typeof createHash>; bytes: number } => {
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      (t as unknown as { bytes: number }).bytes += chunk.length;
      cb(null, chunk);
    },
  }) as Transform & { hash: ReturnType<typeof createHash>; bytes: number };
  t.hash = hash;
  t.bytes = 0;
  return t;
};

/** Hashes a file by streaming it (bounded memory). */
export const hashFile = async (path: string, opts: { end?: number } = {}) => {
  const h = hasher();
  await pipeline(createReadStream(path, { end: opts.end }), h, async (src: AsyncIterable<Buffer>) => {
    for await (const _ of src);
  });
  return { hash: h.hash, size: h.bytes };
};

/**
 * Hashes a source and makes it re-readable. A Readable is written to a temp file in `spoolDir` while being
 * hashed (so a cut upload resumes from the file, not from a stream that cannot rewind).
 */
export const prepareSource = async (source: BlobSource, spoolDir: string): Promise<PreparedSource> => {
  if (source instanceof Uint8Array) {
    const sha256 = createHash("sha256").update(source).digest("hex");
    return {
      sha256,
      size: source.byteLength,
      from: (o, end) => source.subarray(o, end),
      dispose: async () => {},
    };
  }
  if (source instanceof Readable) {
    const path = join(spoolDir, `spool-${randomUUID()}`);
    const h = hasher();
    try {
      await pipeline(source, h, createWriteStream(path));
    } catch (e) {
      await unlink(path).catch(() => {});
      throw e;
    }
    return fileSource(path, h.hash.digest("hex"), h.bytes, () => unlink(path).catch(() => {}));
  }
  if (
    typeof source === "object" &&
    source !== null &&
    typeof (source as { path?: unknown }).path === "string"
  ) {
    const { path } = source as { path: string };
    const { hash, size } = await hashFile(path);
    return fileSource(path, hash.digest("hex"), size, async () => {});
  }
  throw invalid("source", "a blob source is a Uint8Array, a Readable or { path }");
};

const fileSource = (
  path: string,
  sha256: string,
  size: number,
  dispose: () => Promise<void>,
): PreparedSource => ({
  sha256,
  size,
  // An empty range is bytes, not a stream: createReadStream cannot express "nothing from offset size".
  from: (o, end = size) =>
    o >= end ? new Uint8Array(0) : createReadStream(path, { start: o, end: Math.min(end, size) - 1 }),
  dispose,
});
