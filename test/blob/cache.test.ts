import { existsSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, test } from "vitest";
import { BlobCache } from "../../src/blob/cache.ts";
import { BlobTransfers } from "../../src/blob/client.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

test("cache - evicts least recently used complete blobs down to its bound, never one in use or a partial", () => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-cache-"));
  dirs.push(dir);
  const cache = new BlobCache(dir, 250);
  const names = ["a", "b", "c", "d"].map((c) => c.repeat(64));
  names.forEach((n, i) => {
    writeFileSync(join(dir, n), Buffer.alloc(100));
    utimesSync(join(dir, n), 1000 + i, 1000 + i); // a oldest … d newest
  });
  writeFileSync(join(dir, `${"e".repeat(64)}.partial`), Buffer.alloc(500));
  cache.hold(names[0]!); // the oldest is being read
  cache.evict();
  expect(names.map((n) => existsSync(join(dir, n)))).toEqual([true, false, false, true]);
  expect(existsSync(join(dir, `${"e".repeat(64)}.partial`))).toBe(true);
  cache.release(names[0]!);
  expect(cache.has(names[3]!, 100)).toBe(true);
  expect(cache.has(names[3]!, 99)).toBe(false);
});

test("cache - without a cacheDir, a temp directory is made on first use and removed at close", () => {
  const t = new BlobTransfers({ inlineBytes: 16 });
  const dir = t.cache.dir;
  expect(existsSync(dir)).toBe(true);
  t.close();
  expect(existsSync(dir)).toBe(false);
});
