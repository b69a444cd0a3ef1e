// The blob HTTP API on a real hub (SQLite store, file:// storage) over real sockets: transfer, resume,
// integrity, limits, access and collection.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import {
  ADMIN,
  begin,
  bytes,
  createRun,
  json,
  node,
  pushTo,
  putBytes,
  rawPut,
  sha,
  startBlobHub,
  upload,
} from "./blobs-helpers.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;

/** Object files (complete and partial) under the hub's blob directory. */
const objectFiles = (dir: string): string[] => {
  const base = join(dir, "objects", "blobs");
  if (!existsSync(base)) return [];
  return readdirSync(base).flatMap((d) => readdirSync(join(base, d)));
};

describe("hub blobs", () => {
  test("blobs - upload and download round trip with the hash; a present blob costs one round trip", async () => {
    const { url } = await startBlobHub({}, cleanups);
    const run = await createRun(url);
    const data = bytes(3 * MiB + 17);
    const b = await begin(url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: sha(data), size: data.length });
    expect(b.status).toBe(201);
    expect(b.body).toMatchObject({
      state: "uploading",
      upload: { offset: 0, size: data.length, complete: false },
    });
    const p = await putBytes(url, `/v1/runs/${run}/blobs/uploads/${b.body.upload.id}`, ADMIN, 0, data);
    expect(p).toEqual({
      status: 200,
      body: { id: b.body.upload.id, offset: data.length, size: data.length, complete: true },
    });
    const again = await begin(url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: sha(data), size: data.length });
    expect(again).toEqual({
      status: 200,
      body: { state: "present", blob: { sha256: sha(data), size: data.length } },
    });

    const res = await fetch(`${url}/v1/runs/${run}/blobs/${sha(data)}`, {
      headers: { authorization: ADMIN },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("etag")).toBe(`"${sha(data)}"`);
    expect(res.headers.get("content-length")).toBe(String(data.length));
    expect(res.headers.get("accept-ranges")).toBe("bytes");
    expect(sha(new Uint8Array(await res.arrayBuffer()))).toBe(sha(data));

    const head = await fetch(`${url}/v1/runs/${run}/blobs/${sha(data)}`, {
      method: "HEAD",
      headers: { authorization: ADMIN },
    });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(data.length));

    const part = await fetch(`${url}/v1/runs/${run}/blobs/${sha(data)}`, {
      headers: { authorization: ADMIN, range: `bytes=${data.length - 1000}-` },
    });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe(
      `bytes ${data.length - 1000}-${data.length - 1}/${data.length}`,
    );
    expect(Buffer.from(await part.arrayBuffer()).equals(data.subarray(data.length - 1000))).toBe(true);
    const past = await fetch(`${url}/v1/runs/${run}/blobs/${sha(data)}`, {
      headers: { authorization: ADMIN, range: `bytes=${data.length}-` },
    });
    expect(past.status).toBe(416);
    await past.arrayBuffer();
  });

  test("blobs - an empty blob uploads with an empty PUT and downloads empty", async () => {
    const { url } = await startBlobHub({}, cleanups);
    const run = await createRun(url);
    const empty = new Uint8Array();
    await upload(url, run, empty);
    const res = await fetch(`${url}/v1/runs/${run}/blobs/${sha(empty)}`, {
      headers: { authorization: ADMIN },
    });
    expect(res.status).toBe(200);
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  test("blobs - a PUT cut midway keeps its durable bytes; the resume re-sends little and the blob is whole", async () => {
    const { url } = await startBlobHub({}, cleanups);
    const run = await createRun(url);
    const data = bytes(24 * MiB);
    const b = await begin(url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: sha(data), size: data.length });
    const path = `/v1/runs/${run}/blobs/uploads/${b.body.upload.id}`;
    const sent = 20 * MiB;
    expect(
      await rawPut(url, path, ADMIN, {
        offset: 0,
        declared: data.length,
        send: data.subarray(0, sent),
        cut: true,
      }),
    ).toBeNull();
    // The hub notices the cut, makes what it wrote durable and records it.
    // Offsets recorded during the PUT show up first; wait until the cut one settles.
    let offset = -1;
    for (let i = 0; i < 100; i++) {
      const s = await json(await fetch(`${url}${path}`, { headers: { authorization: ADMIN } }));
      expect(s.status).toBe(200);
      if (s.body.offset === offset && offset > 0) break;
      offset = s.body.offset;
      await sleep(200);
    }
    // Everything the hub received is kept (the file backend fsyncs on a cut), so at most socket buffers are lost.
    expect(offset).toBeGreaterThan(sent - 4 * MiB);
    expect(offset).toBeLessThanOrEqual(sent);
    // Wrong offset: 409 naming the durable one.
    const wrong = await putBytes(url, path, ADMIN, 0, data.subarray(0, 10));
    expect(wrong.status).toBe(409);
    expect(wrong.body.error).toMatchObject({ code: "FLEETLINK_E_CONFLICT", field: "upload-offset" });
    expect(wrong.body.error.message).toContain(String(offset));
    const rest = await putBytes(url, path, ADMIN, offset, data.subarray(offset));
    expect(rest.body).toMatchObject({ complete: true, offset: data.length });
    const res = await fetch(`${url}/v1/runs/${run}/blobs/${sha(data)}`, {
      headers: { authorization: ADMIN },
    });
    expect(sha(new Uint8Array(await res.arrayBuffer()))).toBe(sha(data));
  });

  test("blobs - an upload resumed through a second replica on the same store completes and is readable there", async () => {
    const a = await startBlobHub({}, cleanups);
    const b = await startBlobHub({ storeUrl: `sqlite:${join(a.dir, "fleet.db")}`, dir: a.dir }, cleanups);
    const run = await createRun(a.url);
    const data = bytes(5 * MiB);
    const s = await begin(a.url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: sha(data), size: data.length });
    const path = `/v1/runs/${run}/blobs/uploads/${s.body.upload.id}`;
    const half = await putBytes(a.url, path, ADMIN, 0, data.subarray(0, 2 * MiB));
    expect(half.body).toMatchObject({ offset: 2 * MiB, complete: false });
    // B has no running hash of the first half: it rebuilds it from the durable prefix.
    const rest = await putBytes(b.url, path, ADMIN, 2 * MiB, data.subarray(2 * MiB));
    expect(rest.body).toMatchObject({ complete: true });
    const res = await fetch(`${b.url}/v1/runs/${run}/blobs/${sha(data)}`, {
      headers: { authorization: ADMIN },
    });
    expect(sha(new Uint8Array(await res.arrayBuffer()))).toBe(sha(data));
  });

  test("blobs - bytes that do not match the declared sha256 are refused and nothing is kept", async () => {
    const { url, dir } = await startBlobHub({}, cleanups);
    const run = await createRun(url);
    const data = bytes(1 * MiB);
    const claimed = sha(bytes(16));
    const b = await begin(url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: claimed, size: data.length });
    const path = `/v1/runs/${run}/blobs/uploads/${b.body.upload.id}`;
    const p = await putBytes(url, path, ADMIN, 0, data);
    expect(p.status).toBe(400);
    expect(p.body.error).toMatchObject({ code: "FLEETLINK_E_INVALID_ARGUMENT", field: "sha256" });
    expect((await json(await fetch(`${url}${path}`, { headers: { authorization: ADMIN } }))).status).toBe(
      404,
    );
    const get = await fetch(`${url}/v1/runs/${run}/blobs/${claimed}`, { headers: { authorization: ADMIN } });
    expect(get.status).toBe(404);
    expect(((await get.json()) as any).error).toMatchObject({
      code: "FLEETLINK_E_BLOB_NOT_FOUND",
      field: "sha256",
    });
    expect(objectFiles(dir)).toEqual([]);
  });

  test("blobs - over the limit: 413 before the body is read (Content-Length), naming the limit; size and quota at begin", async () => {
    const { url } = await startBlobHub({ maxBlobBytes: 10 * MiB, blobRunQuotaBytes: 12 * MiB }, cleanups);
    const run = await createRun(url);
    const big = await begin(url, `/v1/runs/${run}/blobs`, ADMIN, {
      sha256: sha(bytes(1)),
      size: 10 * MiB + 1,
    });
    expect(big.status).toBe(413);
    expect(big.body.error).toMatchObject({ code: "FLEETLINK_E_PAYLOAD_TOO_LARGE", field: "size" });
    expect(big.body.error.message).toContain(String(10 * MiB));

    const data = bytes(100);
    const b = await begin(url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: sha(data), size: data.length });
    const t = performance.now();
    // Declares a terabyte, sends 10 bytes and waits: the answer must not wait for the rest.
    const r = await rawPut(url, `/v1/runs/${run}/blobs/uploads/${b.body.upload.id}`, ADMIN, {
      offset: 0,
      declared: 1024 ** 4,
      send: data.subarray(0, 10),
      cut: false,
    });
    expect(performance.now() - t).toBeLessThan(2000);
    expect(r!.status).toBe(413);
    expect(r!.body.error.code).toBe("FLEETLINK_E_PAYLOAD_TOO_LARGE");
    expect(r!.body.error.message).toContain("at most 100 bytes");

    const q1 = await begin(url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: sha(bytes(2)), size: 8 * MiB });
    expect(q1.status).toBe(201);
    const q2 = await begin(url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: sha(bytes(3)), size: 8 * MiB });
    expect(q2.status).toBe(413);
    expect(q2.body.error).toMatchObject({ code: "FLEETLINK_E_QUOTA_EXCEEDED" });
    expect(q2.body.error.message).toContain(String(12 * MiB));
  });

  test("blobs - bad begin bodies name their field and change nothing", async () => {
    const { url } = await startBlobHub({}, cleanups);
    const run = await createRun(url);
    for (const [body, field] of [
      [{ sha256: "abc", size: 1 }, "sha256"],
      [{ sha256: "A".repeat(64), size: 1 }, "sha256"],
      [{ sha256: sha(bytes(1)), size: -1 }, "size"],
      [{ sha256: sha(bytes(1)), size: 1.5 }, "size"],
    ] as const) {
      const r = await begin(url, `/v1/runs/${run}/blobs`, ADMIN, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.field).toBe(field);
    }
    const n = await node(url, "n1");
    const r = await begin(url, "/v1/node/blobs", n.auth, { sha256: sha(bytes(1)), size: 1 });
    expect(r.body.error.field).toBe("runId");
    const missing = await begin(url, "/v1/runs/00000000-0000-7000-8000-000000000000/blobs", ADMIN, {
      sha256: sha(bytes(1)),
      size: 1,
    });
    expect(missing.status).toBe(404);
  });

  test("blobs - access: a node reads only its instructions' blobs; a run only its own", async () => {
    const { url } = await startBlobHub({}, cleanups);
    const run = await createRun(url);
    const other = await createRun(url);
    const a = await node(url, "a");
    const b = await node(url, "b");
    const data = bytes(1000);
    const ref = { $blob: `sha256:${sha(data)}`, size: data.length };
    await upload(url, run, data);
    expect((await pushTo(url, run, a.id, { model: ref })).status).toBe(201);
    const get = (auth: string, path: string) => fetch(`${url}${path}`, { headers: { authorization: auth } });
    const okA = await get(a.auth, `/v1/node/blobs/${sha(data)}`);
    expect(okA.status).toBe(200);
    expect(sha(new Uint8Array(await okA.arrayBuffer()))).toBe(sha(data));
    const noB = await get(b.auth, `/v1/node/blobs/${sha(data)}`);
    expect(noB.status).toBe(404);
    expect(((await noB.json()) as any).error.code).toBe("FLEETLINK_E_BLOB_NOT_FOUND");
    expect((await get(ADMIN, `/v1/runs/${other}/blobs/${sha(data)}`)).status).toBe(404);
    // A node's own upload for a run it works for, then readable by it and by the run.
    const up = bytes(2000);
    const nb = await begin(url, "/v1/node/blobs", a.auth, { sha256: sha(up), size: up.length, runId: run });
    expect(nb.status).toBe(201);
    const forbidden = await begin(url, "/v1/node/blobs", b.auth, {
      sha256: sha(up),
      size: up.length,
      runId: run,
    });
    expect(forbidden.status).toBe(403);
    // Another node cannot drive a's upload.
    expect((await putBytes(url, `/v1/node/blobs/uploads/${nb.body.upload.id}`, b.auth, 0, up)).status).toBe(
      404,
    );
    const done = await putBytes(url, `/v1/node/blobs/uploads/${nb.body.upload.id}`, a.auth, 0, up);
    expect(done.body.complete).toBe(true);
    expect((await get(a.auth, `/v1/node/blobs/${sha(up)}`)).status).toBe(200);
    expect((await get(ADMIN, `/v1/runs/${run}/blobs/${sha(up)}`)).status).toBe(200);
    // No credential: 401 before anything else.
    expect((await get("Bearer nope", `/v1/node/blobs/${sha(up)}`)).status).toBe(401);
    // Presigned URLs are off (file://).
    const url409 = await json(await get(a.auth, `/v1/node/blobs/${sha(up)}/url`));
    expect(url409.status).toBe(409);
  });

  test("blobs - the collector deletes an unreferenced blob after grace, and an abandoned upload's partial bytes", async () => {
    const { url, dir, hub } = await startBlobHub(
      { blobGraceMs: 100, blobUploadIdleMs: 100, blobCollectIntervalMs: 60_000 },
      cleanups,
    );
    const run = await createRun(url);
    const data = bytes(4096);
    await upload(url, run, data);
    const half = bytes(4096);
    const b = await begin(url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: sha(half), size: half.length });
    await putBytes(
      url,
      `/v1/runs/${run}/blobs/uploads/${b.body.upload.id}`,
      ADMIN,
      0,
      half.subarray(0, 1000),
    );
    expect(objectFiles(dir).length).toBe(2);
    // First round finds the blob without live reference; a round after the grace deletes it.
    await hub.blobs!.collect();
    await sleep(300);
    await hub.blobs!.collect();
    await sleep(300);
    await hub.blobs!.collect();
    expect(objectFiles(dir)).toEqual([]);
    const get = await fetch(`${url}/v1/runs/${run}/blobs/${sha(data)}`, {
      headers: { authorization: ADMIN },
    });
    expect(get.status).toBe(404);
  });

  test("blobs - without blob storage the routes answer 404 and hello does not announce blobs", async () => {
    const { url } = await startBlobHub({ blobStore: undefined }, cleanups);
    const r = await begin(url, `/v1/runs/x/blobs`, ADMIN, { sha256: sha(bytes(1)), size: 1 });
    expect(r.status).toBe(404);
    expect(r.body.error.message).toContain("--blobs");
  });
});
