// Upload PUTs of the blob client against a real hub over real sockets: each PUT carries at most `putBytes`,
// so a large blob over a slow link never outlasts the hub's request timeout; 408/429/5xx answers are retried
// from the durable offset; a refused PUT's body is not sent on; a buffer updated in place between two encodes
// sends its new bytes.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, request } from "node:http";
import { type AddressInfo, connect, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { BlobClient, BlobTransfers } from "../../src/blob/client.ts";
import { ADMIN, createRun, startBlobHub } from "../hub/blobs-helpers.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const KiB = 1024;

describe("blob client PUTs", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  const listen = async (server: {
    listen(p: number, h: string, cb: () => void): unknown;
    address(): unknown;
  }) => {
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };

  const clientOf = (hub: string, prefix: string, o: { putBytes?: number; maxAttempts?: number } = {}) => {
    const cacheDir = mkdtempSync(join(tmpdir(), "fleetlink-blob-cache-"));
    cleanups.push(async () => rmSync(cacheDir, { recursive: true, force: true }));
    const transfers = new BlobTransfers({
      inlineBytes: 16,
      cacheDir,
      putBytes: o.putBytes,
      retry: { initialMs: 10, maxMs: 50, maxAttempts: o.maxAttempts ?? 3 },
    });
    cleanups.push(async () => transfers.close());
    return new BlobClient({ hub: () => hub, headers: () => ({ authorization: ADMIN }), prefix }, transfers);
  };

  test("client PUTs - a blob sent over a link slower than the hub's request timeout allows goes in capped PUTs and completes", async () => {
    const h = await startBlobHub({ requestTimeoutMs: 1000 }, cleanups);
    const run = await createRun(h.url);
    // A TCP proxy passing about 1 MiB/s towards the hub: 3 MiB in one PUT would take 3 s, past the 1 s timeout.
    const target = new URL(h.url);
    const proxy = createNetServer((c) => {
      const up = connect(Number(target.port), target.hostname);
      c.on("data", (d: Buffer) => {
        up.write(d);
        c.pause();
        setTimeout(() => c.resume(), d.length / KiB);
      });
      up.on("data", (d) => c.write(d));
      for (const [a, b] of [
        [c, up],
        [up, c],
      ] as const) {
        a.on("error", () => b.destroy());
        a.on("close", () => b.destroy());
      }
    });
    const via = await listen(proxy);
    cleanups.push(() => new Promise((r) => proxy.close(r)));
    const client = clientOf(via, `/v1/runs/${run}/blobs`, { putBytes: 512 * KiB });
    const data = randomBytes(3 * 1024 * KiB);
    expect(await client.upload(data)).toEqual({ sha256: sha(data), size: data.length });
    expect(client.transfers.stats).toMatchObject({ uploads: 6, bytesUploaded: data.length });
    const back = await fetch(`${h.url}/v1/runs/${run}/blobs/${sha(data)}`, {
      headers: { authorization: ADMIN },
    });
    expect(sha(new Uint8Array(await back.arrayBuffer()))).toBe(sha(data));
  }, 20_000);

  test("client PUTs - 408, 429 and 503 answers are retried from the durable offset", async () => {
    const h = await startBlobHub({}, cleanups);
    const run = await createRun(h.url);
    // An HTTP proxy that answers the first PUTs itself, as a timed-out hub (408 with an INVALID_ARGUMENT body),
    // a rate limiter and an unavailable upstream would, and passes everything else to the hub.
    const answers = [
      [408, "FLEETLINK_E_INVALID_ARGUMENT"],
      [429, "FLEETLINK_E_RATE_LIMITED"],
      [503, "FLEETLINK_E_HUB_UNAVAILABLE"],
    ] as const;
    const seen: string[] = [];
    const target = new URL(h.url);
    const proxy = createServer((req, res) => {
      seen.push(`${req.method} ${req.headers["upload-offset"] ?? ""}`);
      const fail =
        req.method === "PUT" ? answers[seen.filter((s) => s.startsWith("PUT")).length - 1] : undefined;
      if (fail) {
        res.writeHead(fail[0], { "content-type": "application/json", connection: "close" });
        res.end(JSON.stringify({ error: { code: fail[1], message: `answered ${fail[0]}` } }));
        return;
      }
      const up = request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      up.on("error", () => res.destroy());
      req.pipe(up);
    });
    const via = await listen(proxy);
    cleanups.push(() => new Promise((r) => proxy.close(r)));
    const client = clientOf(via, `/v1/runs/${run}/blobs`, { putBytes: 100 * KiB });
    const data = randomBytes(250 * KiB);
    expect(await client.upload(data)).toEqual({ sha256: sha(data), size: data.length });
    expect(seen.filter((s) => s.startsWith("PUT"))).toEqual([
      "PUT 0",
      "PUT 0",
      "PUT 0",
      "PUT 0",
      `PUT ${100 * KiB}`,
      `PUT ${200 * KiB}`,
    ]);
  });

  test("client PUTs - a PUT refused before its body was read stops sending and closes its socket", async () => {
    let closedAt = 0;
    let answeredAt = 0;
    const server = createServer((req, res) => {
      if (req.method === "POST") {
        res.writeHead(201, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            state: "uploading",
            blob: { sha256: "0".repeat(64), size: 8 * 1024 * KiB },
            upload: { id: "u1", offset: 0, size: 8 * 1024 * KiB, complete: false },
          }),
        );
        return;
      }
      // Answered at once, the body left unread (as the hub answers a PUT it refuses), the socket kept open.
      req.socket.once("close", () => {
        closedAt = Date.now();
      });
      req.pause();
      answeredAt = Date.now();
      res.writeHead(400, { "content-type": "application/json" });
      res.end(
        JSON.stringify({ error: { code: "FLEETLINK_E_INVALID_ARGUMENT", message: "no", field: "sha256" } }),
      );
    });
    const url = await listen(server);
    cleanups.push(
      () =>
        new Promise((r) => {
          server.closeAllConnections();
          server.close(r);
        }),
    );
    const client = clientOf(url, "/v1/runs/r/blobs");
    await expect(client.upload(randomBytes(8 * 1024 * KiB))).rejects.toMatchObject({ field: "sha256" });
    await new Promise((r) => setTimeout(r, 500));
    // The client ended the connection itself, right after reading the refusal.
    expect(closedAt).toBeGreaterThanOrEqual(answeredAt);
    expect(closedAt - answeredAt).toBeLessThan(500);
  });

  test("client PUTs - a buffer updated in place between two encodes sends its new bytes", async () => {
    const h = await startBlobHub({}, cleanups);
    const run = await createRun(h.url);
    const client = clientOf(h.url, `/v1/runs/${run}/blobs`);
    const weights = new Float32Array(1000);
    weights.fill(1);
    const first = (await client.encode({ w: weights, again: weights })) as Record<string, { $blob: string }>;
    expect(first.again).toEqual(first.w); // one payload: one upload
    weights.fill(2); // the next round, in place
    const second = (await client.encode({ w: weights })) as Record<string, { $blob: string; size: number }>;
    expect(second.w.$blob).not.toBe(first.w.$blob);
    const back = (await client.decode(second)) as { w: Buffer };
    expect([...new Float32Array(back.w.buffer, back.w.byteOffset, 1000)].every((x) => x === 2)).toBe(true);
  });
});
