// The blob client against a real hub over real sockets (SQLite, file:// blobs): uploads resume from the
// hub's durable offset, a cached blob is not downloaded again, a partial download resumes with a Range, and
// bytes that do not hash to the blob are never accepted.
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { type AddressInfo, connect, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { BlobClient, BlobTransfers } from "../../src/blob/client.ts";
import { ADMIN, createRun, startBlobHub } from "../hub/blobs-helpers.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const KiB = 1024;

describe("blob client", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  const setup = async () => {
    const h = await startBlobHub({}, cleanups);
    const run = await createRun(h.url);
    const cacheDir = mkdtempSync(join(tmpdir(), "fleetlink-blob-cache-"));
    cleanups.push(async () => rmSync(cacheDir, { recursive: true, force: true }));
    const transfers = new BlobTransfers({
      inlineBytes: 16,
      cacheDir,
      retry: { initialMs: 10, maxMs: 50, maxAttempts: 3 },
    });
    cleanups.push(async () => transfers.close());
    const client = new BlobClient(
      { hub: () => h.url, headers: () => ({ authorization: ADMIN }), prefix: `/v1/runs/${run}/blobs` },
      transfers,
    );
    return { ...h, run, client, transfers, cacheDir };
  };

  test("client - an upload cut midway by the network resumes from the hub's durable offset, sending only the rest", async () => {
    const { url, run, transfers } = await setup();
    const data = randomBytes(4 * 1024 * KiB);
    // A TCP proxy that cuts the first connection after 3 MiB went through it towards the hub.
    const target = new URL(url);
    let cut = false;
    const proxy = createNetServer((c) => {
      const up = connect(Number(target.port), target.hostname);
      let n = 0;
      c.on("data", (d: Buffer) => {
        n += d.length;
        if (!cut && n > 3 * 1024 * KiB) {
          cut = true;
          c.destroy();
          up.destroy();
          return;
        }
        up.write(d);
      });
      up.on("data", (d) => c.write(d));
      up.on("error", () => c.destroy());
      c.on("error", () => up.destroy());
      c.on("close", () => up.destroy());
      up.on("close", () => c.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise((r) => proxy.close(r)));
    const viaProxy = new BlobClient(
      {
        hub: () => `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
        headers: () => ({ authorization: ADMIN }),
        prefix: `/v1/runs/${run}/blobs`,
      },
      new BlobTransfers({
        inlineBytes: 16,
        cacheDir: transfers.cache.dir,
        retry: { initialMs: 20, maxMs: 200, maxAttempts: 30 },
      }),
    );
    cleanups.push(async () => viaProxy.transfers.close());
    const blob = await viaProxy.upload(data);
    expect(cut).toBe(true);
    expect(blob).toEqual({ sha256: sha(data), size: data.length });
    // The PUT that completed carried only what the hub had not made durable before the cut.
    expect(viaProxy.transfers.stats.uploads).toBe(1);
    expect(viaProxy.transfers.stats.bytesUploaded).toBeLessThan(data.length);
    const back = await fetch(`${url}/v1/runs/${run}/blobs/${blob.sha256}`, {
      headers: { authorization: ADMIN },
    });
    expect(sha(new Uint8Array(await back.arrayBuffer()))).toBe(sha(data));
  });

  test("client - a download cut by the network resumes from its partial file with a Range", async () => {
    const { url, client } = await setup();
    const data = randomBytes(4 * 1024 * KiB);
    const blob = await client.upload(data);
    // A proxy that cuts the first connection after 2 MiB went through it towards the client.
    const target = new URL(url);
    let cut = false;
    const proxy = createNetServer((c) => {
      const up = connect(Number(target.port), target.hostname);
      let n = 0;
      up.on("data", (d: Buffer) => {
        n += d.length;
        if (!cut && n > 2 * 1024 * KiB) {
          cut = true;
          c.destroy();
          up.destroy();
          return;
        }
        c.write(d);
      });
      c.on("data", (d) => up.write(d));
      up.on("error", () => c.destroy());
      c.on("error", () => up.destroy());
      c.on("close", () => up.destroy());
      up.on("close", () => c.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise((r) => proxy.close(r)));
    const viaProxy = new BlobClient(
      { ...client.endpoint, hub: () => `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` },
      new BlobTransfers({ inlineBytes: 16, retry: { initialMs: 20, maxMs: 100, maxAttempts: 5 } }),
    );
    cleanups.push(async () => viaProxy.transfers.close());
    expect((await viaProxy.handle(blob).bytes()).equals(data)).toBe(true);
    expect(cut).toBe(true);
    // The attempt that finished fetched only what the cut one had not written.
    expect(viaProxy.transfers.stats.downloads).toBe(1);
    expect(viaProxy.transfers.stats.bytesDownloaded).toBeLessThan(data.length - 1024 * KiB);
  });

  test("client - a cached blob is read again without a request; a partial download resumes with a Range", async () => {
    const { client, transfers, cacheDir } = await setup();
    const data = randomBytes(300 * KiB);
    const blob = await client.upload(data);
    const h = client.handle(blob);
    expect((await h.bytes()).equals(data)).toBe(true);
    expect(transfers.stats).toMatchObject({ downloads: 1, bytesDownloaded: data.length });
    expect((await client.handle(blob).bytes()).equals(data)).toBe(true);
    expect(transfers.stats.downloads).toBe(1); // cache hit: nothing sent
    // A download cut at 100 KiB (its partial file is left behind) finishes from there.
    rmSync(join(cacheDir, blob.sha256));
    writeFileSync(join(cacheDir, `${blob.sha256}.partial`), data.subarray(0, 100 * KiB));
    expect((await h.bytes()).equals(data)).toBe(true);
    expect(transfers.stats).toMatchObject({ downloads: 2, bytesDownloaded: data.length + 200 * KiB });
  });

  test("client - a corrupt partial file is detected by the hash, discarded, and the blob fetched whole", async () => {
    const { client, transfers, cacheDir } = await setup();
    const data = randomBytes(64 * KiB);
    const blob = await client.upload(data);
    writeFileSync(join(cacheDir, `${blob.sha256}.partial`), randomBytes(10 * KiB));
    expect((await client.handle(blob).bytes()).equals(data)).toBe(true);
    // One attempt resumed from the bad prefix and was refused; the next took all the bytes again.
    expect(transfers.stats.bytesDownloaded).toBe(data.length);
    expect(existsSync(join(cacheDir, `${blob.sha256}.partial`))).toBe(false);
  });

  test("client - a server sending bytes that do not match the sha256 is refused, nothing is cached", async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), "fleetlink-blob-cache-"));
    cleanups.push(async () => rmSync(cacheDir, { recursive: true, force: true }));
    const wrong = randomBytes(1000);
    const server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": wrong.length });
      res.end(wrong);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const transfers = new BlobTransfers({
      inlineBytes: 16,
      cacheDir,
      retry: { initialMs: 5, maxMs: 5, maxAttempts: 1 },
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
    const claimed = { sha256: sha(randomBytes(1000)), size: 1000 };
    await expect(client.handle(claimed).bytes()).rejects.toThrow(/corrupt/);
    expect(existsSync(join(cacheDir, claimed.sha256))).toBe(false);
    expect(existsSync(join(cacheDir, `${claimed.sha256}.partial`))).toBe(false);
  });

  test("client - a blob over the hub's limit is refused before its bytes are sent, naming the limit", async () => {
    const h = await startBlobHub({ maxBlobBytes: 1000 }, cleanups);
    const run = await createRun(h.url);
    const transfers = new BlobTransfers({ inlineBytes: 16, cacheDir: mkdtempSync(join(tmpdir(), "fl-c-")) });
    cleanups.push(async () => transfers.close());
    const client = new BlobClient(
      { hub: () => h.url, headers: () => ({ authorization: ADMIN }), prefix: `/v1/runs/${run}/blobs` },
      transfers,
    );
    await expect(client.upload(randomBytes(2000))).rejects.toMatchObject({
      code: "FLEETLINK_E_PAYLOAD_TOO_LARGE",
      field: "size",
    });
    expect(transfers.stats.bytesUploaded).toBe(0);
  });
});
