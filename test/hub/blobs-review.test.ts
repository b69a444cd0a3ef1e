// The hub's blob PUT path after review of issue 19 (findings 2, 10, 11, 12, 13, 14), on a real hub (SQLite,
// file:// storage) over real sockets: a timed-out body is answered retryable, refused PUTs close their
// connection, concurrent PUTs per replica are bounded, a failed store commit after the object was made is
// retried by the next PUT, and object deletes that fail are retried by the next collection.
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { type ClientRequest, type IncomingMessage, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { FileBlobStorage } from "../../src/hub/blobs/file-storage.ts";
import type { BlobStorage } from "../../src/hub/blobs/storage.ts";
import { createHub } from "../../src/hub/server.ts";
import { FleetlinkError } from "../../src/protocol/errors.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";
import { ADMIN, begin, bytes, createRun, type Json, putBytes, sha, startBlobHub } from "./blobs-helpers.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Answer {
  status: number;
  headers: IncomingMessage["headers"];
  body: Json;
}

/** A PUT over a raw socket that declares `declared` bytes and sends `send` now; `req` may send more later. */
const openPut = (url: string, path: string, o: { offset: number; declared: number; send: Uint8Array }) => {
  const u = new URL(url);
  const req: ClientRequest = request({
    host: u.hostname,
    port: u.port,
    method: "PUT",
    path,
    headers: {
      authorization: ADMIN,
      "content-type": "application/octet-stream",
      "upload-offset": String(o.offset),
      "content-length": String(o.declared),
    },
  });
  const answer = new Promise<Answer>((resolve, reject) => {
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: JSON.parse(text) }));
    });
    req.on("error", reject);
  });
  answer.catch(() => {});
  req.write(o.send);
  return { req, answer };
};

const uploadPath = (run: string, id: string) => `/v1/runs/${run}/blobs/uploads/${id}`;

const beginRun = async (url: string, run: string, data: Uint8Array) => {
  const b = await begin(url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: sha(data), size: data.length });
  expect(b.status).toBe(201);
  return b.body.upload.id as string;
};

const status = async (url: string, run: string, id: string) =>
  (
    await fetch(`${url}${uploadPath(run, id)}`, { headers: { authorization: ADMIN } })
  ).json() as Promise<Json>;

describe("hub blob PUTs after review", () => {
  test("a PUT body slower than requestTimeoutMs is answered 408 HUB_UNAVAILABLE (retryable); what arrived is kept", async () => {
    const { url } = await startBlobHub({ requestTimeoutMs: 1000 }, cleanups);
    const run = await createRun(url);
    const data = bytes(1000);
    const id = await beginRun(url, run, data);
    const { req, answer } = openPut(url, uploadPath(run, id), {
      offset: 0,
      declared: data.length,
      send: data.subarray(0, 400),
    });
    const a = await answer;
    req.destroy();
    expect(a.status).toBe(408);
    expect(a.body.error.code).toBe("FLEETLINK_E_HUB_UNAVAILABLE");
    expect(a.body.error.message).toMatch(/requestTimeoutMs/);
    // The client resumes from the durable offset.
    let s: Json;
    for (let i = 0; i < 50; i++) {
      s = await status(url, run, id);
      if (s.offset === 400) break;
      await sleep(20);
    }
    expect(s.offset).toBe(400);
    const p = await putBytes(url, uploadPath(run, id), ADMIN, 400, data.subarray(400));
    expect(p.body).toMatchObject({ complete: true });
  });

  test("a refused PUT (409 wrong offset) closes its connection instead of leaving the body streaming", async () => {
    const { url } = await startBlobHub({}, cleanups);
    const run = await createRun(url);
    const data = bytes(64 * 1024);
    const id = await beginRun(url, run, data);
    const { req, answer } = openPut(url, uploadPath(run, id), { offset: 5, declared: 100, send: bytes(10) });
    const a = await answer;
    req.destroy();
    expect(a.status).toBe(409);
    expect(a.body.error).toMatchObject({ code: "FLEETLINK_E_CONFLICT", field: "upload-offset" });
    expect(a.headers.connection).toBe("close");
  });

  test("PUTs past blobMaxConcurrentPuts are refused 429 RATE_LIMITED with Retry-After; the option is checked", async () => {
    const { url } = await startBlobHub({ blobMaxConcurrentPuts: 1 }, cleanups);
    const run = await createRun(url);
    const one = bytes(1000);
    const two = bytes(1000);
    const id1 = await beginRun(url, run, one);
    const id2 = await beginRun(url, run, two);
    const first = openPut(url, uploadPath(run, id1), {
      offset: 0,
      declared: one.length,
      send: one.subarray(0, 10),
    });
    await sleep(200); // the first PUT is streaming
    const second = openPut(url, uploadPath(run, id2), { offset: 0, declared: two.length, send: two });
    const a = await second.answer;
    expect(a.status).toBe(429);
    expect(a.body.error.code).toBe("FLEETLINK_E_RATE_LIMITED");
    expect(a.body.error.message).toMatch(/blobMaxConcurrentPuts/);
    expect(a.headers["retry-after"]).toBe("1");
    expect(a.headers.connection).toBe("close");
    // The slot frees when the first PUT ends.
    first.req.end(one.subarray(10));
    expect((await first.answer).body).toMatchObject({ complete: true });
    const p = await putBytes(url, uploadPath(run, id2), ADMIN, 0, two);
    expect(p.body).toMatchObject({ complete: true });

    const store = await openStore("memory:");
    cleanups.push(() => store.close());
    expect(() =>
      createHub({ store, token: "t", blobStore: `file://${tmpdir()}/x`, blobMaxConcurrentPuts: 0 }),
    ).toThrow(expect.objectContaining({ kind: "INVALID_ARGUMENT", field: "blobMaxConcurrentPuts" }));
  });

  test("a fresh upload gets the running hash of nothing (S3 then need not read the blob back to verify)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fleetlink-blobs-hash-"));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const file = FileBlobStorage.open(`file://${dir}/objects`);
    const given: (string | null)[] = [];
    const finishes: (string | undefined)[] = [];
    const storage = Object.create(file) as BlobStorage;
    storage.openWriter = (u, h) => {
      given.push(h ? h.copy().digest("hex") : null);
      return file.openWriter(u, h);
    };
    storage.finish = (u, want) => {
      finishes.push(want);
      return file.finish(u);
    };
    const { url } = await startBlobHub({ dir, blobStore: storage }, cleanups);
    const run = await createRun(url);
    const data = bytes(2000);
    const id = await beginRun(url, run, data);
    expect((await putBytes(url, uploadPath(run, id), ADMIN, 0, data)).body).toMatchObject({ complete: true });
    expect(given).toEqual([sha(new Uint8Array())]);
    expect(finishes).toEqual([undefined]);
  });

  test("a store commit that fails after the object was made is committed by the client's next PUT", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fleetlink-blobs-commit-"));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const real = await openStore(`sqlite:${join(dir, "fleet.db")}`);
    let failures = 1;
    const store = new Proxy(real, {
      get(t, k, r) {
        // Decided per call: the hub's instrumented store may keep the function it got once.
        if (k === "completeBlobUpload")
          return async (id: string) => {
            if (failures-- > 0) throw new FleetlinkError("STORE_UNAVAILABLE", "the store went away (test)");
            return t.completeBlobUpload(id);
          };
        const v = Reflect.get(t, k, r);
        return typeof v === "function" ? v.bind(t) : v;
      },
    }) as Store;
    const { url } = await startBlobHub({ dir, store }, cleanups);
    const run = await createRun(url);
    const data = bytes(5000);
    const id = await beginRun(url, run, data);
    const p = await putBytes(url, uploadPath(run, id), ADMIN, 0, data);
    expect(p.status).toBe(503);
    expect(p.body.error.code).toBe("FLEETLINK_E_STORE_UNAVAILABLE");
    // Every byte is durable; the blob is not visible yet.
    expect(await status(url, run, id)).toMatchObject({ offset: data.length, complete: false });
    const again = await putBytes(url, uploadPath(run, id), ADMIN, data.length, new Uint8Array());
    expect(again).toMatchObject({ status: 200, body: { complete: true } });
    const res = await fetch(`${url}/v1/runs/${run}/blobs/${sha(data)}`, {
      headers: { authorization: ADMIN },
    });
    expect(res.status).toBe(200);
    expect(sha(new Uint8Array(await res.arrayBuffer()))).toBe(sha(data));
  });

  test("objects whose delete failed after their rows were collected are deleted by the next collection", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fleetlink-blobs-gc-"));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const file = FileBlobStorage.open(`file://${dir}/objects`);
    let failDeletes = 1;
    const storage = Object.create(file) as BlobStorage;
    storage.delete = async (keys) => {
      if (failDeletes-- > 0) throw new FleetlinkError("OBJECT_STORE_UNAVAILABLE", "unreachable (test)");
      return file.delete(keys);
    };
    const { url, hub } = await startBlobHub(
      { dir, blobStore: storage, blobGraceMs: 0, blobCollectIntervalMs: 60_000 },
      cleanups,
    );
    const run = await createRun(url);
    const data = bytes(3000);
    const id = await beginRun(url, run, data);
    expect((await putBytes(url, uploadPath(run, id), ADMIN, 0, data)).body).toMatchObject({ complete: true });
    const objects = () => {
      const base = join(dir, "objects", "blobs");
      return existsSync(base) ? readdirSync(base).flatMap((d) => readdirSync(join(base, d))) : [];
    };
    expect(objects()).toHaveLength(1);
    // Nothing references the blob (an upload ref keeps nothing alive) and the grace is 0: the round deletes its
    // row, then fails to delete its object.
    await hub.blobs!.collect();
    expect(objects()).toHaveLength(1);
    await hub.blobs!.collect();
    expect(objects()).toHaveLength(0);
  });
});
