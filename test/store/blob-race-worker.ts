// A hub replica stand-in for blob-race.test.ts: a separate OS process with its own store connection, either
// pushing instructions that reference its own blob (and withdrawing them) or collecting blobs with no grace.
import { createHash } from "node:crypto";
import { blobRef } from "../../src/protocol/blobs.ts";
import { FleetlinkError } from "../../src/protocol/errors.ts";
import { newId } from "../../src/protocol/ids.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";

type Cmd =
  | { cmd: "push"; runId: string; nodeId: string; seed: string; durationMs: number }
  | { cmd: "collect"; durationMs: number };

const send = (m: unknown) => new Promise<void>((res) => process.send!(m, () => res()));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Uploads the blob (size 100) to the run; returns its object key as the store keeps it. */
const upload = async (store: Store, runId: string, sha256: string): Promise<string> => {
  const b = await store.beginBlobUpload({
    sha256,
    size: 100,
    runId,
    nodeId: null,
    uploadId: newId(),
    objectKey: `k/${newId()}`,
    maxBlobBytes: 1000,
    runQuotaBytes: 10_000,
  });
  if (b.state === "present") return b.blob.objectKey;
  await store.recordBlobUpload(b.upload.id, 100, null);
  return (await store.completeBlobUpload(b.upload.id)).blob.objectKey;
};

/**
 * Pushes instructions referencing this process's blob (only this process uploads it, so the object key it
 * last uploaded is the one a live reference must keep). While each pushed instruction is live, the blob must
 * be readable by its node with that key, before and after a short wait; then it is withdrawn.
 */
const pushLoop = async (store: Store, c: Extract<Cmd, { cmd: "push" }>) => {
  const sha256 = createHash("sha256").update(c.seed).digest("hex");
  const payload = new TextEncoder().encode(JSON.stringify({ w: blobRef({ sha256, size: 100 }) }));
  let key = await upload(store, c.runId, sha256);
  const stats = { pushed: 0, refused: 0, violations: [] as string[] };
  const end = Date.now() + c.durationMs;
  while (Date.now() < end) {
    let id: string;
    try {
      const [ins] = await store.pushInstructions(c.runId, [
        { dst: c.nodeId, method: "m", ttlMs: 600_000, payload },
      ]);
      id = ins!.id;
    } catch (e) {
      if (!(e instanceof FleetlinkError) || e.code !== "FLEETLINK_E_BLOB_NOT_FOUND") throw e;
      stats.refused++;
      key = await upload(store, c.runId, sha256);
      continue;
    }
    stats.pushed++;
    for (const wait of [0, Math.floor(Math.random() * 5)]) {
      await sleep(wait);
      const b = await store.readableBlob(sha256, { nodeId: c.nodeId });
      if (b?.objectKey !== key)
        stats.violations.push(`${id}: blob ${b ? `key ${b.objectKey}` : "gone"}, expected ${key}`);
    }
    await store.withdrawInstructions(c.runId, [id]);
  }
  return stats;
};

const collectLoop = async (store: Store, c: Extract<Cmd, { cmd: "collect" }>) => {
  let deleted = 0;
  const end = Date.now() + c.durationMs;
  while (Date.now() < end) {
    deleted += (await store.collectBlobs({ graceMs: 0, uploadIdleMs: 3_600_000 })).deleted.length;
    await sleep(Math.floor(Math.random() * 3));
  }
  return { deleted };
};

const main = async () => {
  const store = await openStore(process.argv[2]!, { busyTimeoutMs: 30_000, poolSize: 2 });
  process.on("message", async (c: Cmd) => {
    try {
      await send(c.cmd === "push" ? await pushLoop(store, c) : await collectLoop(store, c));
    } catch (e) {
      await send({ error: String((e as Error).stack ?? e) });
    }
  });
  await send({ ready: true });
};

main().catch(async (e) => {
  await send({ error: String((e as Error).stack ?? e) });
  process.exit(1);
});
