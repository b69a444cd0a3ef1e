// With S3 storage and presigned downloads on, a node fetches a blob from the object store itself (s3rver):
// the bytes never pass through the hub, and no hub credential goes to S3.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { resolveS3Config } from "../../src/checkpoint/s3-config.ts";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { S3BlobStorage } from "../../src/hub/blobs/s3-storage.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";
import { type S3rver, startS3rver } from "../helpers/s3rver.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
let s3: S3rver;
let f: TestFleet;
let dir: string;

beforeAll(async () => {
  s3 = await startS3rver("sdk-presigned");
  dir = mkdtempSync(join(tmpdir(), "fleetlink-presigned-"));
  const url = `s3://${s3.bucket}/p?endpoint=${s3.endpoint}&partSizeBytes=${5 * 1024 * 1024}`;
  const storage = new S3BlobStorage(
    url,
    resolveS3Config(url, { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }),
  );
  f = await startFleet({ blobStore: storage, blobPresign: true });
});
afterAll(async () => {
  await f?.close();
  await s3?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("presigned - a node downloads its instruction's blob straight from S3, none of its bytes through the hub", async () => {
  const data = randomBytes(1024 * 1024);
  let got = "";
  const a = await f.node(
    "s3node",
    {
      hash: (p) => {
        got = sha(p as Buffer);
        return (p as Buffer).length;
      },
    },
    { blobCacheDir: join(dir, "cache-node") },
  );
  const fleet = await Fleet.connect({ hub: f.url, token: TOKEN, blobCacheDir: join(dir, "cache-coord") });
  try {
    const run = await fleet.createRun();
    const res = await run.configuration([a.nodeId!]).call("hash", data, { quorum: "all" });
    expect(res.replies.get(a.nodeId!)).toBe(data.length);
    expect(got).toBe(sha(data));
    const metrics = await (
      await fetch(`${f.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
    ).text();
    const down = /^fleetlink_blob_bytes_total\{direction="down"\} (\d+)$/m.exec(metrics);
    expect(Number(down?.[1] ?? 0)).toBe(0);
  } finally {
    await fleet.close();
  }
});
