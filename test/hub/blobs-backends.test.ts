// The blob routes on every store and storage pairing (SQLite or PostgreSQL, file:// or s3:// on s3rver),
// through one replica and across two: the part of blobs.test.ts where the backends differ.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { resolveS3Config } from "../../src/checkpoint/s3-config.ts";
import { S3BlobStorage } from "../../src/hub/blobs/s3-storage.ts";
import type { BlobStorage } from "../../src/hub/blobs/storage.ts";
import { openSession } from "../helpers/node-http.ts";
import { dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";
import { type S3rver, startS3rver } from "../helpers/s3rver.ts";
import {
  ADMIN,
  begin,
  bytes,
  createRun,
  json,
  node,
  pushTo,
  putBytes,
  sha,
  startBlobHub,
  upload,
} from "./blobs-helpers.ts";

const MiB = 1024 * 1024;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});
let s3: S3rver;
beforeAll(async () => {
  s3 = await startS3rver("hub-blobs");
});
afterAll(() => s3.stop());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const s3Storage = (prefix: string): BlobStorage => {
  const url = `s3://${s3.bucket}/${prefix}?endpoint=${s3.endpoint}&partSizeBytes=${5 * MiB}`;
  const st = new S3BlobStorage(
    url,
    resolveS3Config(url, { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }),
  );
  cleanups.push(() => st.close());
  return st;
};

type Pairing = { store: "sqlite" | "postgres"; storage: "file" | "s3" };
const pairings: Pairing[] = [
  { store: "sqlite", storage: "s3" },
  ...(PG_URL
    ? ([
        { store: "postgres", storage: "file" },
        { store: "postgres", storage: "s3" },
      ] as const)
    : []),
];

/** Two replicas over one store and one storage. */
const twoReplicas = async (p: Pairing, extra: Record<string, unknown> = {}) => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-blobs-b-"));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  let storeUrl = `sqlite:${join(dir, "fleet.db")}`;
  if (p.store === "postgres") {
    const s = pgSchemaUrl("blobs");
    storeUrl = s.url;
    cleanups.push(() => dropSchema(s.schema));
  }
  const prefix = `t${Math.random().toString(36).slice(2, 8)}`;
  const storage = () => (p.storage === "s3" ? { blobStore: s3Storage(prefix) } : {});
  const a = await startBlobHub({ storeUrl, dir, ...storage(), ...extra }, cleanups);
  const b = await startBlobHub({ storeUrl, dir, ...storage(), ...extra }, cleanups);
  return { a, b };
};

describe.each(pairings)("hub blobs on $store + $storage", (p) => {
  const name = `${p.store}+${p.storage}`;

  test(`blobs ${name} - an upload begun on one replica and finished on the other is verified and readable on both`, async () => {
    const { a, b } = await twoReplicas(p);
    const run = await createRun(a.url);
    const data = bytes(11 * MiB + 3);
    const s = await begin(a.url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: sha(data), size: data.length });
    const path = `/v1/runs/${run}/blobs/uploads/${s.body.upload.id}`;
    // 6 MiB: S3 keeps its one 5 MiB part, file keeps all.
    const first = await putBytes(a.url, path, ADMIN, 0, data.subarray(0, 6 * MiB));
    expect(first.body.offset).toBe(p.storage === "s3" ? 5 * MiB : 6 * MiB);
    const off = first.body.offset as number;
    const st = await json(await fetch(`${b.url}${path}`, { headers: { authorization: ADMIN } }));
    expect(st.body).toMatchObject({ offset: off, complete: false });
    const rest = await putBytes(b.url, path, ADMIN, off, data.subarray(off));
    expect(rest.body).toMatchObject({ complete: true, offset: data.length });
    for (const h of [a, b]) {
      const res = await fetch(`${h.url}/v1/runs/${run}/blobs/${sha(data)}`, {
        headers: { authorization: ADMIN },
      });
      expect(sha(new Uint8Array(await res.arrayBuffer()))).toBe(sha(data));
    }
    const again = await begin(b.url, `/v1/runs/${run}/blobs`, ADMIN, {
      sha256: sha(data),
      size: data.length,
    });
    expect(again.status).toBe(200);
  }, 60_000);

  test(`blobs ${name} - mismatched bytes finished on another replica are refused and nothing is kept`, async () => {
    const { a, b } = await twoReplicas(p);
    const run = await createRun(a.url);
    const data = bytes(6 * MiB);
    const claimed = sha(bytes(8));
    const s = await begin(a.url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: claimed, size: data.length });
    const path = `/v1/runs/${run}/blobs/uploads/${s.body.upload.id}`;
    const first = await putBytes(a.url, path, ADMIN, 0, data.subarray(0, 5 * MiB));
    const rest = await putBytes(b.url, path, ADMIN, first.body.offset, data.subarray(first.body.offset));
    expect(rest.status).toBe(400);
    expect(rest.body.error.field).toBe("sha256");
    const get = await fetch(`${a.url}/v1/runs/${run}/blobs/${claimed}`, {
      headers: { authorization: ADMIN },
    });
    expect(get.status).toBe(404);
    await get.arrayBuffer();
  }, 60_000);

  test(`blobs ${name} - a node reads its instruction's blob; the collector keeps it while an instruction references it, then deletes it`, async () => {
    const { a, b } = await twoReplicas(p, { blobGraceMs: 100, blobCollectIntervalMs: 60_000 });
    const run = await createRun(a.url);
    const n = await node(a.url, "n");
    const other = await node(a.url, "o");
    const data = bytes(300_000);
    await upload(a.url, run, data);
    // Online (a session said hello), so its instruction stays live instead of ending NODE_UNAVAILABLE.
    await openSession(a.url, n.auth);
    const pushed = await pushTo(a.url, run, n.id, { w: { $blob: `sha256:${sha(data)}`, size: data.length } });
    expect(pushed.status).toBe(201);
    const got = await fetch(`${b.url}/v1/node/blobs/${sha(data)}`, {
      headers: { authorization: n.auth, range: "bytes=1000-" },
    });
    expect(got.status).toBe(206);
    expect(Buffer.from(await got.arrayBuffer()).equals(data.subarray(1000))).toBe(true);
    const no = await fetch(`${b.url}/v1/node/blobs/${sha(data)}`, { headers: { authorization: other.auth } });
    expect(no.status).toBe(404);
    await no.arrayBuffer();
    // Referenced by a live instruction: collection keeps it.
    await a.hub.blobs!.collect();
    await sleep(300);
    await b.hub.blobs!.collect();
    const head = () =>
      fetch(`${a.url}/v1/runs/${run}/blobs/${sha(data)}`, {
        method: "HEAD",
        headers: { authorization: ADMIN },
      });
    expect((await head()).status).toBe(200);
    // Withdrawn: no live reference left; after the grace the next round deletes it.
    const w = await fetch(`${a.url}/v1/runs/${run}/instructions/withdraw`, {
      method: "POST",
      headers: { authorization: ADMIN, "content-type": "application/json" },
      body: JSON.stringify({ ids: [pushed.body.instructions[0].id] }),
    });
    expect(w.status).toBe(200);
    await b.hub.blobs!.collect();
    await sleep(300);
    await a.hub.blobs!.collect();
    await sleep(300);
    await a.hub.blobs!.collect();
    expect((await head()).status).toBe(404);
    expect((await a.store.blobStats()).blobs).toBe(0);
  }, 60_000);
});

describe("hub blobs presigned", () => {
  test("blobs presign - with S3 and blobPresign a node gets a URL that serves the bytes; hello announces blob-urls", async () => {
    const p: Pairing = { store: "sqlite", storage: "s3" };
    const { a } = await twoReplicas(p, { blobPresign: true });
    const run = await createRun(a.url);
    const n = await node(a.url, "n");
    const data = bytes(70_000);
    await upload(a.url, run, data);
    await pushTo(a.url, run, n.id, { w: { $blob: `sha256:${sha(data)}`, size: data.length } });
    const r = await json(
      await fetch(`${a.url}/v1/node/blobs/${sha(data)}/url`, { headers: { authorization: n.auth } }),
    );
    expect(r.status).toBe(200);
    expect(r.body.expiresAt).toBeGreaterThan(Date.now());
    const got = await fetch(r.body.url);
    expect(sha(new Uint8Array(await got.arrayBuffer()))).toBe(sha(data));
    const opened = await json(
      await fetch(`${a.url}/v1/node/open`, {
        method: "POST",
        headers: { authorization: n.auth, "content-type": "application/json" },
        body: "{}",
      }),
    );
    const hello = await json(
      await fetch(`${a.url}/v1/node/hello`, {
        method: "POST",
        headers: { authorization: n.auth, "content-type": "application/json" },
        body: JSON.stringify({ session: opened.body.session, inflight: [] }),
      }),
    );
    expect(hello.body.features).toEqual(expect.arrayContaining(["blobs", "blob-urls"]));
  }, 60_000);
});
