import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { decodePayload, encodePayload } from "../../src/blob/codec.ts";
import { FleetBlob } from "../../src/blob/handle.ts";
import type { BlobInfo } from "../../src/protocol/blobs.ts";

/** An upload that only hashes and records what it was given (the transfer itself is tested in client tests). */
const recorder = (inlineBytes = 16) => {
  const uploaded: BlobInfo[] = [];
  const stored = new Map<string, Buffer>();
  return {
    uploaded,
    stored,
    opts: {
      inlineBytes,
      upload: async (b: Uint8Array) => {
        const info = { sha256: createHash("sha256").update(b).digest("hex"), size: b.byteLength };
        uploaded.push(info);
        stored.set(info.sha256, Buffer.from(b));
        return info;
      },
    },
  };
};

/** Handles whose bytes come from the recorder's map (downloads are tested in the client tests). */
const handles = (stored: Map<string, Buffer>) => (b: BlobInfo) =>
  Object.assign(new FleetBlob(b, null), { bytes: async () => stored.get(b.sha256)! });

describe("blob codec", () => {
  it("codec - a payload without bytes is returned as it is (same object, nothing uploaded)", async () => {
    const r = recorder();
    const p = { a: 1, b: [1, "x", { c: null }], d: new Date(0) };
    expect(await encodePayload(p, r.opts)).toBe(p);
    expect(await decodePayload(p, { handle: handles(r.stored) })).toBe(p);
    expect(r.uploaded).toEqual([]);
  });

  it("codec - bytes round trip nested in objects and arrays, at the inline threshold edge", async () => {
    const r = recorder(16);
    const at = new Uint8Array(16).fill(7); // inline: ≤ threshold
    const over = Buffer.alloc(17, 9); // a blob: one byte over
    const p = { w: { layers: [at, over] }, n: 3, f: new Float32Array([1.5, -2]) };
    const wire = (await encodePayload(p, r.opts)) as { w: { layers: unknown[] }; n: number; f: unknown };
    expect(wire.w.layers[0]).toEqual({ $bytes: Buffer.from(at).toString("base64") });
    expect(wire.w.layers[1]).toEqual({ $blob: `sha256:${r.uploaded[0]!.sha256}`, size: 17 });
    expect(r.uploaded).toHaveLength(1);
    // Survives JSON as it would on the wire.
    const back = (await decodePayload(JSON.parse(JSON.stringify(wire)), { handle: handles(r.stored) })) as {
      w: { layers: Buffer[] };
      n: number;
      f: Buffer;
    };
    expect(Buffer.compare(back.w.layers[0]!, Buffer.from(at))).toBe(0);
    expect(Buffer.compare(back.w.layers[1]!, over)).toBe(0);
    expect(back.n).toBe(3);
    expect([...new Float32Array(back.f.buffer, back.f.byteOffset, 2)]).toEqual([1.5, -2]);
    expect(p.w.layers[0]).toBe(at); // the user's payload is not changed
  });

  it("codec - the same buffer in many places of one payload is uploaded once; a later payload hashes it again", async () => {
    const r = recorder(4);
    const big = new Float32Array(100);
    const wire = (await encodePayload([big, { x: big }], r.opts)) as [unknown, { x: unknown }];
    expect(r.uploaded).toHaveLength(1);
    expect(wire[1].x).toEqual(wire[0]);
    // Updated in place between two pushes (a model's weights each round): the new bytes are sent.
    big[0] = 1.5;
    const again = (await encodePayload({ again: big }, r.opts)) as { again: unknown };
    expect(r.uploaded).toHaveLength(2);
    expect(r.uploaded[1]!.sha256).not.toBe(r.uploaded[0]!.sha256);
    expect(again.again).toEqual({ $blob: `sha256:${r.uploaded[1]!.sha256}`, size: 400 });
  });

  it("codec - a malformed part found after transfers started fails the call; their failures are not unhandled", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      // Decode: the first reference's download fails after the walk already met a malformed $bytes.
      const failing = (b: BlobInfo) =>
        Object.assign(new FleetBlob(b, null), {
          bytes: () =>
            new Promise<Buffer>((_, rej) => setTimeout(() => rej(new Error("download failed")), 5)),
        });
      const ref = { $blob: `sha256:${"b".repeat(64)}`, size: 3 };
      await expect(decodePayload({ a: ref, z: { $bytes: 7 } }, { handle: failing })).rejects.toMatchObject({
        field: "payload.z",
      });
      // Encode: an upload started, then a sibling nests past the depth limit.
      let deep: unknown = 1;
      for (let i = 0; i < 200; i++) deep = { deep };
      const opts = {
        inlineBytes: 1,
        upload: () => new Promise<BlobInfo>((_, rej) => setTimeout(() => rej(new Error("upload failed")), 5)),
      };
      await expect(encodePayload({ a: new Uint8Array(8), z: deep }, opts)).rejects.toMatchObject({
        code: "FLEETLINK_E_INVALID_ARGUMENT",
      });
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("codec - a user object with a reserved key is refused naming its path", async () => {
    const r = recorder();
    await expect(encodePayload({ a: [{ ok: 1 }, { $blob: "mine" }] }, r.opts)).rejects.toMatchObject({
      code: "FLEETLINK_E_INVALID_ARGUMENT",
      field: "payload.a[1]",
    });
    await expect(encodePayload({ deep: { $bytes: 1 } }, r.opts, "result")).rejects.toMatchObject({
      field: "result.deep",
    });
    expect(r.uploaded).toEqual([]);
  });

  it("codec - a handle stands for its reference; lazy mode gives handles", async () => {
    const r = recorder();
    const h = new FleetBlob({ sha256: "a".repeat(64), size: 5 }, null);
    const wire = await encodePayload({ h }, r.opts);
    expect(wire).toEqual({ h: { $blob: `sha256:${"a".repeat(64)}`, size: 5 } });
    expect(JSON.parse(JSON.stringify({ h }))).toEqual(wire);
    const lazy = (await decodePayload(wire, { mode: "lazy", handle: (b) => new FleetBlob(b, null) })) as {
      h: FleetBlob;
    };
    expect(lazy.h).toBeInstanceOf(FleetBlob);
    expect(lazy.h.size).toBe(5);
  });

  it("codec - a malformed reference is refused naming its path", async () => {
    await expect(
      decodePayload({ x: [{ $blob: "sha256:zz", size: 1 }] }, { handle: (b) => new FleetBlob(b, null) }),
    ).rejects.toMatchObject({ field: "payload.x[0]" });
    await expect(
      decodePayload({ $bytes: "AA==", extra: 1 }, { handle: (b) => new FleetBlob(b, null) }),
    ).rejects.toMatchObject({ field: "payload" });
  });

  it("codec - nesting up to the depth limit is encoded; cycles and deeper payloads are refused, never looped on", async () => {
    const r = recorder(1);
    let v: unknown = new Uint8Array([1, 2, 3]);
    for (let i = 0; i < 100; i++) v = { v };
    const wire = await encodePayload(v, r.opts);
    expect(r.uploaded).toHaveLength(1);
    let w = wire as { v?: unknown };
    for (let i = 0; i < 100; i++) w = w.v as { v?: unknown };
    expect(w).toMatchObject({ size: 3 });
    // A cycle without bytes is left to JSON encoding (which names it); with bytes it is refused here.
    const plain: Record<string, unknown> = {};
    plain.self = plain;
    expect(await encodePayload(plain, r.opts)).toBe(plain);
    // Two self references: an untracked walk would branch 2^128 times; the scan switches to tracking.
    const fork: Record<string, unknown> = {};
    fork.l = fork;
    fork.r = fork;
    expect(await encodePayload(fork, r.opts)).toBe(fork);
    const withBytes: Record<string, unknown> = { b: new Uint8Array(1) };
    withBytes.self = withBytes;
    await expect(encodePayload(withBytes, r.opts)).rejects.toMatchObject({
      code: "FLEETLINK_E_INVALID_ARGUMENT",
    });
  });
});
