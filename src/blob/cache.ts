import { mkdirSync, readdirSync, statSync, unlinkSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { isSha256 } from "../protocol/blobs.ts";

/** Bytes of complete blobs a cache keeps by default before evicting the least recently used. (4 GiB) */
export const DEFAULT_BLOB_CACHE_BYTES = 4 * 1024 ** 3;

/**
 * A content-addressed directory of downloaded blobs: `<dir>/<sha256>` is complete and verified (it is only
 * ever renamed there after its hash matched), `<dir>/<sha256>.partial` is a download to resume. Bounded:
 * after each new blob, the least recently used complete blobs (by mtime, touched on every use) are deleted
 * until the total fits, never one in use.
 */
export class BlobCache {
  readonly dir: string;
  readonly maxBytes: number;
  private readonly inUse = new Map<string, number>();

  constructor(dir: string, maxBytes = DEFAULT_BLOB_CACHE_BYTES) {
    this.dir = dir;
    this.maxBytes = maxBytes;
    mkdirSync(dir, { recursive: true });
  }

  path(sha256: string): string {
    return join(this.dir, sha256);
  }

  partial(sha256: string): string {
    return join(this.dir, `${sha256}.partial`);
  }

  /** True when the complete blob is here (and marks it recently used). */
  has(sha256: string, size: number): boolean {
    try {
      const st = statSync(this.path(sha256));
      if (st.size !== size) return false;
      const now = new Date();
      utimesSync(this.path(sha256), now, now);
      return true;
    } catch {
      return false;
    }
  }

  hold(sha256: string): void {
    this.inUse.set(sha256, (this.inUse.get(sha256) ?? 0) + 1);
  }

  release(sha256: string): void {
    const n = (this.inUse.get(sha256) ?? 0) - 1;
    if (n <= 0) this.inUse.delete(sha256);
    else this.inUse.set(sha256, n);
  }

  /** Deletes least recently used complete blobs not in use until the total is within maxBytes. */
  evict(): void {
    const files: { sha: string; size: number; mtime: number }[] = [];
    for (const name of readdirSync(this.dir)) {
      if (!isSha256(name)) continue;
      try {
        const st = statSync(join(this.dir, name));
        files.push({ sha: name, size: st.size, mtime: st.mtimeMs });
      } catch {
        // Removed meanwhile (another process sharing the directory).
      }
    }
    let total = files.reduce((a, f) => a + f.size, 0);
    files.sort((a, b) => a.mtime - b.mtime);
    for (const f of files) {
      if (total <= this.maxBytes) break;
      if (this.inUse.has(f.sha)) continue;
      try {
        unlinkSync(join(this.dir, f.sha));
        total -= f.size;
      } catch {
        // Already gone.
      }
    }
  }
}
