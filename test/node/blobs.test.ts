// The node agent's side of blobs over a real hub: payloads decoded before the handler runs (bytes or lazy
// handles), over the WebSocket and the HTTP transport; a handler passing a received handle back sends no
// bytes; a node is refused a blob it may not read.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { FleetBlob } from "../../src/blob/handle.ts";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const MiB = 1024 * 1024;

describe("node blobs", () => {
  let f: TestFleet;
  let dir: string;
  let fleet: Fleet;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "fleetlink-node-blobs-"));
    f = await startFleet({ blobStore: `file://${join(dir, "objects")}` });
    fleet = await Fleet.connect({
      hub: f.url,
      token: TOKEN,
      blobCacheDir: join(dir, "cache-coord"),
      blobs: "lazy",
    });
  });
  afterEach(async () => {
    await fleet.close();
    await f.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const transport of ["ws", "http"] as const)
    test(`node blobs - over ${transport}: a lazy handler streams its input and returns the same handle without re-sending it`, async () => {
      const input = randomBytes(MiB);
      let streamed = "";
      const a = await f.node(
        `lazy-${transport}`,
        {
          echo: async (p) => {
            const h = (p as { in: FleetBlob }).in;
            expect(h).toBeInstanceOf(FleetBlob);
            const hash = createHash("sha256");
            for await (const c of h.stream()) hash.update(c as Buffer);
            streamed = hash.digest("hex");
            return { out: h, small: new Uint8Array([1, 2, 3]) };
          },
        },
        { transport, blobs: "lazy", blobCacheDir: join(dir, `cache-${transport}`) },
      );
      const run = await fleet.createRun();
      const res = await run.configuration([a.nodeId!]).call("echo", { in: input }, { quorum: "all" });
      expect(streamed).toBe(sha(input));
      const r = res.replies.get(a.nodeId!) as { out: FleetBlob; small: Buffer };
      expect(r.out.sha256).toBe(sha(input));
      expect([...r.small]).toEqual([1, 2, 3]); // inline, decoded to bytes even in lazy mode
      // One upload in all (the coordinator's): returning the handle sent its reference only.
      const metrics = await (
        await fetch(`${f.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
      ).text();
      expect(metrics).toMatch(/^fleetlink_blob_uploads_completed_total 1$/m);
    });

  test("node blobs - a node may not read a blob its instructions never referenced: the handler fails, naming it", async () => {
    const run = await fleet.createRun();
    const secret = await run.blobs!.put(randomBytes(300 * 1024));
    const a = await f.node(
      "nosy",
      {
        peek: async (p, ctx) => (await ctx.blobs!.get(p as { sha256: string; size: number }).bytes()).length,
      },
      { blobCacheDir: join(dir, "cache-nosy") },
    );
    // The payload names the blob by its fields only (not a reference), so the node was never given access.
    const res = await run
      .configuration([a.nodeId!])
      .call("peek", { sha256: secret.sha256, size: secret.size }, { quorum: "all" })
      .catch((e) => e);
    expect(res.errors.get(a.nodeId!)).toMatchObject({ code: "FLEETLINK_E_BLOB_NOT_FOUND" });
  });
});
