// Shared downloads of the blob client over real sockets: readers of one blob share one download, each under
// its own signal; a reader that gives up does not fail the others, and the download stops once none is left.
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { BlobClient, BlobTransfers } from "../../src/blob/client.ts";

const KiB = 1024;

describe("blob client shared downloads", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** A server sending one blob slowly (32 KiB every 20 ms), recording whether each response was cut. */
  const slowServer = async (data: Buffer) => {
    const requests: { cut: boolean }[] = [];
    const server = createServer((_req, res: ServerResponse) => {
      const r = { cut: false };
      requests.push(r);
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": data.length });
      let at = 0;
      const tick = setInterval(() => {
        if (at >= data.length) {
          clearInterval(tick);
          res.end();
          return;
        }
        res.write(data.subarray(at, at + 32 * KiB));
        at += 32 * KiB;
      }, 20);
      res.on("close", () => {
        clearInterval(tick);
        if (at < data.length) r.cut = true;
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    cleanups.push(
      () =>
        new Promise((r) => {
          server.closeAllConnections();
          server.close(r);
        }),
    );
    const cacheDir = mkdtempSync(join(tmpdir(), "fleetlink-blob-cache-"));
    cleanups.push(async () => rmSync(cacheDir, { recursive: true, force: true }));
    const transfers = new BlobTransfers({
      inlineBytes: 16,
      cacheDir,
      retry: { initialMs: 10, maxMs: 50, maxAttempts: 2 },
    });
    cleanups.push(async () => transfers.close());
    const client = new BlobClient(
      {
        hub: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        headers: () => ({}),
        prefix: "/v1/node/blobs",
      },
      transfers,
    );
    const blob = { sha256: createHash("sha256").update(data).digest("hex"), size: data.length };
    return { client, transfers, requests, blob, cacheDir };
  };

  test("shared download - a reader that is cancelled does not fail another reader of the same blob", async () => {
    const data = randomBytes(512 * KiB);
    const { client, transfers, requests, blob } = await slowServer(data);
    const first = new AbortController();
    const second = new AbortController();
    const a = client.acquire(blob, first.signal);
    const b = client.acquire(blob, second.signal);
    await new Promise((r) => setTimeout(r, 60));
    first.abort(new Error("handler cancelled"));
    await expect(a).rejects.toThrow("handler cancelled");
    const path = await b;
    expect(readFileSync(path).equals(data)).toBe(true);
    expect(requests).toHaveLength(1); // one download served both
    expect(requests[0]!.cut).toBe(false);
    expect(transfers.downloading.size).toBe(0);
    transfers.cache.release(blob.sha256);
  });

  test("shared download - once every reader gave up the download is aborted, and a later reader starts over", async () => {
    const data = randomBytes(512 * KiB);
    const { client, transfers, requests, blob, cacheDir } = await slowServer(data);
    const readers = [new AbortController(), new AbortController()];
    const waits = readers.map((c) => client.acquire(blob, c.signal));
    await new Promise((r) => setTimeout(r, 60));
    for (const c of readers) c.abort(new Error("gone"));
    for (const w of waits) await expect(w).rejects.toThrow("gone");
    await new Promise((r) => setTimeout(r, 100));
    expect(requests).toHaveLength(1);
    expect(requests[0]!.cut).toBe(true);
    expect(existsSync(join(cacheDir, blob.sha256))).toBe(false);
    // A reader arriving now gets the blob (resumed from the partial file or fetched again).
    const path = await client.acquire(blob);
    expect(readFileSync(path).equals(data)).toBe(true);
    expect(transfers.downloading.size).toBe(0);
    transfers.cache.release(blob.sha256);
  });
});
