import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rename, stat, truncate, unlink, writeFile } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { pipeline } from "node:stream/promises";
import type { BlobInfo } from "../protocol/blobs.ts";
import { FleetlinkError } from "../protocol/errors.ts";
import type { BlobCache } from "./cache.ts";
import { answerError } from "./http.ts";
import { hasher, hashFile } from "./source.ts";

/** Bytes that arrived but do not hash to the blob's sha256 (or are not its size): start over, from zero. */
export class CorruptDownload extends FleetlinkError {
  constructor(blob: BlobInfo, why: string) {
    super("HUB_UNAVAILABLE", `downloaded blob ${blob.sha256} is corrupt (${why}); it was discarded`, {
      field: "sha256",
    });
  }
}

/** Opens the bytes from `start` on (a GET with `Range: bytes=<start>-` when start > 0). */
export type OpenRange = (start: number) => Promise<IncomingMessage>;

/**
 * One attempt to complete `<dir>/<sha>` from `<dir>/<sha>.partial`: the partial prefix is hashed again (it
 * may come from an earlier process), the rest is requested with a Range and appended while hashing, and the
 * file is renamed into place only once its size and sha256 match. Returns the bytes received.
 */
export const downloadOnce = async (cache: BlobCache, blob: BlobInfo, open: OpenRange): Promise<number> => {
  const partial = cache.partial(blob.sha256);
  let have = await stat(partial).then(
    (s) => s.size,
    () => 0,
  );
  if (have > blob.size) {
    await truncate(partial, 0);
    have = 0;
  }
  let hash = have > 0 ? (await hashFile(partial)).hash : createHash("sha256");
  let received = 0;
  if (have < blob.size) {
    const res = await open(have);
    if (res.statusCode === 200 && have > 0) {
      // The server ignored the Range: take the whole body again.
      have = 0;
      hash = createHash("sha256");
    } else if (res.statusCode === 206) {
      const start = Number(/^bytes (\d+)-/.exec(String(res.headers["content-range"] ?? ""))?.[1]);
      if (start !== have) {
        res.destroy();
        throw new CorruptDownload(blob, `range answer starts at ${start}, not ${have}`);
      }
    } else if (res.statusCode !== 200) throw await answerError(res);
    const h = hasher(hash);
    const limit = blob.size - have;
    await pipeline(
      res,
      h,
      async function* (src: AsyncIterable<Buffer>) {
        for await (const c of src) {
          if (h.bytes > limit) throw new CorruptDownload(blob, `more than ${blob.size} bytes`);
          yield c;
        }
      },
      createWriteStream(partial, { flags: have > 0 ? "a" : "w" }),
    );
    received = h.bytes;
    have += h.bytes;
  } else if (blob.size === 0) await writeFile(partial, "");
  if (have !== blob.size) {
    // Cut short: keep the partial file, the next attempt resumes from it.
    throw new FleetlinkError(
      "HUB_UNAVAILABLE",
      `download of blob ${blob.sha256} cut at ${have} of ${blob.size} bytes`,
    );
  }
  const digest = hash.digest("hex");
  if (digest !== blob.sha256) {
    await unlink(partial).catch(() => {});
    throw new CorruptDownload(blob, `sha256 ${digest}`);
  }
  await rename(partial, cache.path(blob.sha256));
  return received;
};
