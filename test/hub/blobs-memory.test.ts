// Bounded memory: a 256 MiB blob uploaded and downloaded through a hub (its own process, so the test's own
// buffers do not count) grows the hub's RSS by far less than the blob.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { expect, test } from "vitest";
import type { Json } from "./blobs-helpers.ts";

const MiB = 1024 * 1024;
const SIZE = 256 * MiB;
const AUTH = "Bearer memory-token";

/** The blob, 1 MiB at a time: one random block, each copy stamped with its index (no two chunks alike). */
const block = createHash("sha512").update("seed").digest();
const chunk = (i: number): Buffer => {
  const b = Buffer.alloc(MiB);
  for (let at = 0; at < MiB; at += block.length) block.copy(b, at);
  b.writeUInt32BE(i, 0);
  return b;
};

test("blobs memory - a 256 MiB upload and download through the hub grows its RSS by less than 64 MiB", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-blobs-mem-"));
  const child = spawn(
    process.execPath,
    ["--expose-gc", join(import.meta.dirname, "blobs-memory-hub.ts"), dir],
    {
      stdio: ["pipe", "pipe", "inherit"],
    },
  );
  const lines = createInterface({ input: child.stdout! });
  const next = () => new Promise<Record<string, unknown>>((r) => lines.once("line", (l) => r(JSON.parse(l))));
  try {
    const { url } = (await next()) as { url: string };
    const h = createHash("sha256");
    for (let i = 0; i < SIZE / MiB; i++) h.update(chunk(i));
    const sha256 = h.digest("hex");
    const run = (
      (await (
        await fetch(`${url}/v1/runs`, { method: "POST", headers: { authorization: AUTH } })
      ).json()) as Json
    ).run.id;
    const begun = (await (
      await fetch(`${url}/v1/runs/${run}/blobs`, {
        method: "POST",
        headers: { authorization: AUTH, "content-type": "application/json" },
        body: JSON.stringify({ sha256, size: SIZE }),
      })
    ).json()) as Json;
    child.stdin!.write("reset\n");
    const { rss: base } = (await next()) as { rss: number };

    // Upload with backpressure: the next chunk is written when the socket drained.
    const u = new URL(url);
    const status = await new Promise<Json>((resolve, reject) => {
      const req = request({
        host: u.hostname,
        port: u.port,
        method: "PUT",
        path: `/v1/runs/${run}/blobs/uploads/${begun.upload.id}`,
        headers: {
          authorization: AUTH,
          "content-type": "application/octet-stream",
          "upload-offset": "0",
          "content-length": String(SIZE),
        },
      });
      req.on("response", (res) => {
        let t = "";
        res.on("data", (c) => (t += c));
        res.on("end", () => resolve(JSON.parse(t)));
      });
      req.on("error", reject);
      let i = 0;
      const pump = () => {
        while (i < SIZE / MiB) if (!req.write(chunk(i++))) return void req.once("drain", pump);
        req.end();
      };
      pump();
    });
    expect(status).toMatchObject({ complete: true, offset: SIZE });

    const res = await fetch(`${url}/v1/runs/${run}/blobs/${sha256}`, { headers: { authorization: AUTH } });
    const d = createHash("sha256");
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) d.update(c);
    expect(d.digest("hex")).toBe(sha256);

    child.stdin!.write("peak\n");
    const { peak } = (await next()) as { peak: number };
    const grew = (peak - base) / MiB;
    expect(grew, `hub RSS grew ${grew.toFixed(1)} MiB`).toBeLessThan(64);
  } finally {
    child.stdin!.end();
    await new Promise((r) => child.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);
