// Bytes in, bytes out, end to end over a real hub (SQLite, file:// blobs) with real agents: the coordinator's
// Uint8Array reaches the handler as equal bytes, the handler's bytes come back, one buffer broadcast to many
// nodes is uploaded once, and lazy results stream to a file.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { FleetBlob } from "../../src/blob/handle.ts";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

const MiB = 1024 * 1024;
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** A series of the hub's /metrics, summed over its labels matching `labels`. */
const metric = async (url: string, name: string, labels = ""): Promise<number> => {
  const text = await (
    await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
  ).text();
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith(name) && line.includes(labels) && !line.startsWith(`${name}_`))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
};

describe("coordinator blobs", () => {
  let f: TestFleet;
  let dir: string;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "fleetlink-sdk-blobs-"));
    f = await startFleet({ blobStore: `file://${join(dir, "objects")}` });
  });
  afterEach(async () => {
    await f.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const node = (name: string, handlers: Parameters<TestFleet["node"]>[1], extra = {}) =>
    f.node(name, handlers, { blobCacheDir: join(dir, `cache-${name}`), ...extra });
  const fleet = async (extra: Partial<Parameters<typeof Fleet.connect>[0]> = {}) => {
    const fl = await Fleet.connect({
      hub: f.url,
      token: TOKEN,
      blobCacheDir: join(dir, "cache-coord"),
      ...extra,
    });
    return fl;
  };

  test("blobs - a 3 MiB Uint8Array reaches the handler as equal bytes; its 5 MiB result comes back equal", async () => {
    const input = new Uint8Array(randomBytes(3 * MiB));
    const output = randomBytes(5 * MiB);
    let seen: unknown;
    const a = await node("n1", {
      train: (p) => {
        seen = (p as { weights: unknown }).weights;
        return { update: output, note: "ok" };
      },
    });
    const fl = await fleet();
    try {
      const run = await fl.createRun();
      const res = await run
        .configuration([a.nodeId!])
        .call("train", { weights: input, round: 1 }, { quorum: "all" });
      expect(Buffer.isBuffer(seen)).toBe(true);
      expect(sha(seen as Buffer)).toBe(sha(input));
      const r = res.replies.get(a.nodeId!) as { update: Buffer; note: string };
      expect(r.note).toBe("ok");
      expect(Buffer.isBuffer(r.update)).toBe(true);
      expect(r.update.equals(output)).toBe(true);
      // Two blobs crossed, each once: the input (coordinator) and the result (node).
      expect(await metric(f.url, "fleetlink_blob_uploads_completed_total")).toBe(2);
    } finally {
      await fl.close();
    }
  });

  test("blobs - a broadcast of one 20 MiB buffer to 3 nodes uploads it once; each node gets equal bytes", async () => {
    const model = randomBytes(20 * MiB);
    const got = new Map<string, string>();
    const agents = await Promise.all(
      ["b1", "b2", "b3"].map((n) =>
        node(n, {
          load: (p, ctx) => {
            got.set(ctx.nodeId, sha(p as Buffer));
            return (p as Buffer).length;
          },
        }),
      ),
    );
    const fl = await fleet();
    try {
      const run = await fl.createRun();
      const b = await run.broadcast(
        agents.map((x) => x.nodeId!),
        "load",
        model,
        { ttlMs: 60_000 },
      );
      const out = await b.done;
      for (const x of agents) expect(out.get(x.nodeId!)).toMatchObject({ ok: true, value: 20 * MiB });
      expect(new Set(got.values())).toEqual(new Set([sha(model)]));
      // And again in a call: hashed again (it could have changed in place), found on the hub: no bytes sent.
      await run.configuration([agents[0]!.nodeId!]).call("load", model, { quorum: "all" });
      expect(run.blobs!.client.transfers.stats).toMatchObject({ uploads: 1, bytesUploaded: 20 * MiB });
      expect(await metric(f.url, "fleetlink_blob_uploads_completed_total")).toBe(1);
      expect(await metric(f.url, "fleetlink_blob_bytes_total", 'direction="up"')).toBe(20 * MiB);
    } finally {
      await fl.close();
    }
  });

  test("blobs - lazy mode hands over a FleetBlob that streams the result to a file", async () => {
    const big = randomBytes(2 * MiB);
    const a = await node("lz", {
      // The handler sends a file without reading it into memory.
      make: async (_p, ctx) => {
        const path = join(dir, "result.bin");
        writeFileSync(path, big);
        return { file: await ctx.blobs!.put({ path }) };
      },
    });
    const fl = await fleet({ blobs: "lazy" });
    try {
      const run = await fl.createRun();
      const res = await run.configuration([a.nodeId!]).call("make", null, { quorum: "all" });
      const h = (res.replies.get(a.nodeId!) as { file: FleetBlob }).file;
      expect(h).toBeInstanceOf(FleetBlob);
      expect(h.size).toBe(2 * MiB);
      const out = join(dir, "saved.bin");
      await h.saveTo(out);
      expect(readFileSync(out).equals(big)).toBe(true);
      const chunks: Buffer[] = [];
      for await (const c of h.stream({ start: 10, end: 19 })) chunks.push(c as Buffer);
      expect(Buffer.concat(chunks).equals(big.subarray(10, 20))).toBe(true);
    } finally {
      await fl.close();
    }
  });

  test("blobs - run.blobs.put takes bytes, a stream or a file; a blob the hub holds costs one round trip", async () => {
    const data = randomBytes(MiB);
    const fl = await fleet();
    try {
      const run = await fl.createRun();
      const path = join(dir, "src.bin");
      writeFileSync(path, data);
      const fromStream = await run.blobs!.put(Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
      expect({ sha256: fromStream.sha256, size: fromStream.size }).toEqual({ sha256: sha(data), size: MiB });
      const stats = run.blobs!.client.transfers.stats;
      expect(stats.uploads).toBe(1);
      const fromFile = await run.blobs!.put({ path });
      const fromBytes = await run.blobs!.put(data);
      expect(fromFile.sha256).toBe(fromStream.sha256);
      expect(fromBytes.sha256).toBe(fromStream.sha256);
      expect(stats.uploads).toBe(1); // present: no bytes sent again
      expect((await fromFile.bytes()).equals(data)).toBe(true);
    } finally {
      await fl.close();
    }
  });

  test("blobs - bad options and reserved keys are refused naming the field", async () => {
    await expect(Fleet.connect({ hub: f.url, token: TOKEN, blobs: "eager" as "lazy" })).rejects.toMatchObject(
      {
        field: "blobs",
      },
    );
    await expect(Fleet.connect({ hub: f.url, token: TOKEN, inlineBytes: -1 })).rejects.toMatchObject({
      field: "inlineBytes",
    });
    const fl = await fleet();
    try {
      const run = await fl.createRun();
      await expect(
        run.configuration(["nobody"]).call("m", { x: { $blob: "mine" } }, { timeoutMs: 1000 }),
      ).rejects.toMatchObject({ code: "FLEETLINK_E_INVALID_ARGUMENT", field: "payload.x" });
    } finally {
      await fl.close();
    }
  });
});
