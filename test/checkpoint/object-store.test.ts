import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from "vitest";
import { type FileStore, fsError } from "../../src/checkpoint/file-store.ts";
import { errorKind, type ObjectStore, readAll } from "../../src/checkpoint/object-store.ts";
import { loadS3Backend, openObjectStore } from "../../src/checkpoint/open.ts";
import { resolveS3Config } from "../../src/checkpoint/s3-config.ts";
import { S3Store, s3Error } from "../../src/checkpoint/s3-store.ts";
import { FleetlinkError } from "../../src/protocol/errors.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { runHookedScript } from "../helpers/hooked.ts";
import { type S3rver, startS3rver } from "../helpers/s3rver.ts";

const MiB = 1024 * 1024;
const bytes = (s: string) => new TextEncoder().encode(s);
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Streams data in irregular slices, the way a file or socket would. */
const streamOf = (data: Uint8Array, slice = 1 * MiB + 17): Readable =>
  Readable.from(
    (function* () {
      for (let i = 0; i < data.byteLength; i += slice) yield Buffer.from(data.subarray(i, i + slice));
    })(),
  );

/** Runs fn over items, at most `width` at a time. */
const pool = async <T>(items: readonly T[], width: number, fn: (t: T) => Promise<unknown>): Promise<void> => {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
};

interface Opened {
  store: ObjectStore;
  /** Everything stored at or around the store's location (a parent dir or prefix), relative to it. */
  leftovers: () => Promise<string[]>;
  cleanup: () => Promise<void>;
}

const BAD_KEYS = [
  "",
  "/abs",
  "/",
  "../escape",
  "a/../../escape",
  "a/..",
  "..",
  "a//b",
  "a/",
  "./a",
  "a/./b",
  "a\\b",
  "a\u0000b",
];

/** One suite, every backend: the file:// and s3:// stores must behave the same. */
const objectStoreConformance = (name: string, open: () => Promise<Opened>): void => {
  describe(`object store conformance: ${name}`, () => {
    let store: ObjectStore;
    let leftovers: () => Promise<string[]>;
    let cleanup: () => Promise<void>;
    beforeEach(async () => {
      ({ store, leftovers, cleanup } = await open());
    });
    afterEach(async () => {
      await store.close();
      await cleanup();
    });

    test("put/get - bytes and streams round-trip byte-identically with size and sha256", async () => {
      const data = bytes("hello, checkpoint");
      expect(await store.put("run/ckpt/host0/state", data)).toEqual({
        size: data.byteLength,
        sha256: sha256(data),
      });
      expect(await store.getBytes("run/ckpt/host0/state")).toEqual(data);
      expect(await readAll(await store.get("run/ckpt/host0/state"))).toEqual(data);

      const streamed = randomBytes(100_000);
      expect(await store.put("run/ckpt/host1/state", streamOf(streamed, 4096))).toEqual({
        size: streamed.byteLength,
        sha256: sha256(streamed),
      });
      expect(Buffer.from(await store.getBytes("run/ckpt/host1/state")).equals(streamed)).toBe(true);
    });

    test("put/get - an empty object round-trips", async () => {
      expect(await store.put("e", new Uint8Array())).toEqual({ size: 0, sha256: sha256(new Uint8Array()) });
      expect(await store.getBytes("e")).toEqual(new Uint8Array());
      expect(await store.head("e")).toEqual({ key: "e", size: 0 });
      expect(await store.put("e2", Readable.from([]))).toEqual({ size: 0, sha256: sha256(new Uint8Array()) });
      expect(await store.head("e2")).toEqual({ key: "e2", size: 0 });
    });

    test("put/get - a 20 MiB streamed body round-trips byte-identically", async () => {
      const data = randomBytes(20 * MiB);
      const res = await store.put("big/state", streamOf(data));
      expect(res).toEqual({ size: data.byteLength, sha256: sha256(data) });
      expect(await store.head("big/state")).toEqual({ key: "big/state", size: data.byteLength });
      // Stream it back without buffering in the store: hash as it arrives.
      const h = createHash("sha256");
      let n = 0;
      for await (const chunk of await store.get("big/state")) {
        h.update(chunk);
        n += chunk.byteLength;
      }
      expect({ n, sha: h.digest("hex") }).toEqual({ n: data.byteLength, sha: res.sha256 });
      expect(Buffer.from(await store.getBytes("big/state")).equals(data)).toBe(true);
    });

    test("put - overwrites, longer then shorter, leaving no trace of the old bytes", async () => {
      await store.put("k", bytes("short"));
      await store.put("k", bytes("a much longer value"));
      expect(await store.getBytes("k")).toEqual(bytes("a much longer value"));
      await store.put("k", bytes("x"));
      expect(await store.getBytes("k")).toEqual(bytes("x"));
      expect(await store.head("k")).toEqual({ key: "k", size: 1 });
      expect(await store.list("")).toEqual([{ key: "k", size: 1 }]);
    });

    test("put - a reader sees the old object, never part of the new one, until the put completes", async () => {
      const v1 = randomBytes(1000);
      await store.put("obj", v1);
      const body = new PassThrough();
      const putting = store.put("obj", body);
      body.write(randomBytes(6 * MiB)); // more than a part, so S3 may already be uploading
      await new Promise((r) => setTimeout(r, 200));
      expect(Buffer.from(await store.getBytes("obj")).equals(v1)).toBe(true);
      expect(await store.head("obj")).toEqual({ key: "obj", size: 1000 });
      body.end(randomBytes(10));
      expect((await putting).size).toBe(6 * MiB + 10);
      expect(await store.head("obj")).toEqual({ key: "obj", size: 6 * MiB + 10 });
    });

    test("put - a body that fails midway rejects and leaves the old object and no partial files", async () => {
      await store.put("obj", bytes("old"));
      const boom = new Error("disk read failed");
      const failing = Readable.from(
        (async function* () {
          yield randomBytes(64 * 1024);
          throw boom;
        })(),
      );
      await expect(store.put("obj", failing)).rejects.toBe(boom);
      expect(await store.getBytes("obj")).toEqual(bytes("old"));
      expect(await leftovers()).toEqual(["store/obj"]);
    });

    test("put - concurrent puts of one key leave exactly one of the bodies, whole", async () => {
      const bodies = [randomBytes(300_000), randomBytes(200_000), randomBytes(100_000)];
      await Promise.all(bodies.map((b) => store.put("race", streamOf(b, 10_000))));
      const got = Buffer.from(await store.getBytes("race"));
      expect(bodies.some((b) => b.equals(got))).toBe(true);
      expect(await leftovers()).toEqual(["store/race"]);
    });

    test("get - a missing object rejects CHECKPOINT_NOT_FOUND; head says null", async () => {
      await store.put("a/b", bytes("x"));
      for (const key of ["missing", "a/missing", "a/b/c", "a"]) {
        const e = await rejectsWith(store.get(key), "CHECKPOINT_NOT_FOUND");
        expect(errorKind(e)).toBe("not_found");
        await rejectsWith(store.getBytes(key), "CHECKPOINT_NOT_FOUND");
        expect(await store.head(key)).toBeNull();
      }
      expect(await store.head("a/b")).toEqual({ key: "a/b", size: 1 });
    });

    test("list - every object under a prefix, recursively, sorted by key", async () => {
      const keys = [
        "r1/c2/h1/s",
        "r1/c10/h0/s",
        "r1/c1/h0/s",
        "r1/c1/h1/s",
        "r1/c1/manifest.json",
        "r2/c1/h0/s",
      ];
      for (const [i, k] of keys.entries()) await store.put(k, new Uint8Array(i + 1));
      const size = (k: string) => keys.indexOf(k) + 1;
      const expectKeys = (ks: string[]) => ks.map((key) => ({ key, size: size(key) }));
      expect(await store.list("")).toEqual(expectKeys([...keys].sort()));
      expect(await store.list("r1/")).toEqual(
        expectKeys(["r1/c1/h0/s", "r1/c1/h1/s", "r1/c1/manifest.json", "r1/c10/h0/s", "r1/c2/h1/s"]),
      );
      expect(await store.list("r1/c1/")).toEqual(
        expectKeys(["r1/c1/h0/s", "r1/c1/h1/s", "r1/c1/manifest.json"]),
      );
      // A prefix is a string prefix, not a directory: "r1/c1" also matches "r1/c10".
      expect((await store.list("r1/c1")).map((o) => o.key)).toEqual([
        "r1/c1/h0/s",
        "r1/c1/h1/s",
        "r1/c1/manifest.json",
        "r1/c10/h0/s",
      ]);
      expect(await store.list("r1/c1/manifest.json")).toEqual(expectKeys(["r1/c1/manifest.json"]));
      expect(await store.list("r3/")).toEqual([]);
      expect(await store.list("r1/c1/h0/s/deeper")).toEqual([]);
    });

    test("delete - removes the keys, ignores missing ones, leaves the rest", async () => {
      for (const k of ["a/1", "a/2", "b/1", "b/2/x"]) await store.put(k, bytes(k));
      await store.delete(["a/1", "b/2/x", "never/was", "a/1"]);
      expect((await store.list("")).map((o) => o.key)).toEqual(["a/2", "b/1"]);
      await store.delete([]);
      await store.delete(["a/2", "b/1"]);
      expect(await store.list("")).toEqual([]);
      expect(await leftovers()).toEqual([]);
      await store.put("b/2/x", bytes("again")); // a deleted key's parents can be reused
      expect(await store.getBytes("b/2/x")).toEqual(bytes("again"));
    });

    test("list/delete - 1005 objects: listing pages past 1000 keys and deletes in batches", async () => {
      const keys = Array.from({ length: 1005 }, (_, i) => `many/${String(i).padStart(4, "0")}`);
      await pool(keys, 16, (k) => store.put(k, bytes(k)));
      const listed = await store.list("many/");
      expect(listed.map((o) => o.key)).toEqual(keys);
      expect(listed.every((o) => o.size === 9)).toBe(true);
      await store.delete(keys);
      expect(await store.list("")).toEqual([]);
    }, 120_000);

    test("keys - bad keys are rejected as INVALID_ARGUMENT on key and nothing is written", async () => {
      for (const key of BAD_KEYS) {
        await rejectsWith(store.put(key, bytes("x")), "INVALID_ARGUMENT", "key");
        await rejectsWith(store.put(key, Readable.from([Buffer.from("x")])), "INVALID_ARGUMENT", "key");
        await rejectsWith(store.get(key), "INVALID_ARGUMENT", "key");
        await rejectsWith(store.getBytes(key), "INVALID_ARGUMENT", "key");
        await rejectsWith(store.head(key), "INVALID_ARGUMENT", "key");
        await rejectsWith(store.delete(["fine", key]), "INVALID_ARGUMENT", "key");
      }
      for (const prefix of ["/abs", "../", "a//", "a/../b", "a\\b"])
        await rejectsWith(store.list(prefix), "INVALID_ARGUMENT", "prefix");
      expect(await leftovers()).toEqual([]);
      const e = await rejectsWith(store.put("../x", bytes("x")), "INVALID_ARGUMENT", "key");
      expect(errorKind(e)).toBe("invalid");
    });

    test("keys - one bad key in a delete deletes nothing", async () => {
      await store.put("keep", bytes("x"));
      await rejectsWith(store.delete(["keep", "../keep"]), "INVALID_ARGUMENT", "key");
      expect(await store.head("keep")).toEqual({ key: "keep", size: 1 });
    });

    test("keys - unusual but valid characters round-trip", async () => {
      const keys = ["sp ace/é/日本/x+y=z&q?#%20", ".hidden/.file", "a.b-c_d~e"];
      for (const k of keys) await store.put(k, bytes(k));
      for (const k of keys) expect(await store.getBytes(k)).toEqual(bytes(k));
      expect((await store.list("")).map((o) => o.key)).toEqual([...keys].sort());
    });
  });
};

// ---------------------------------------------------------------- file://

/** Lists every file under dir, relative to it, sorted. */
const walk = (dir: string): string[] =>
  readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split("\\").join("/"))
    .sort();

objectStoreConformance("file", async () => {
  const base = mkdtempSync(join(tmpdir(), "fleetlink-objects-"));
  return {
    store: openObjectStore(`file://${join(base, "store")}`),
    leftovers: async () => walk(base),
    cleanup: async () => rmSync(base, { recursive: true, force: true }),
  };
});

describe("file store", () => {
  let base: string;
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "fleetlink-objects-"));
  });
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  test("file - keys map to paths under the URL's directory", async () => {
    const store = openObjectStore(`file://${base}/ckpt`);
    expect(store.url).toBe(`file://${base}/ckpt`);
    await store.put("run/ckpt/host0/state", bytes("s"));
    expect(readFileSync(join(base, "ckpt/run/ckpt/host0/state"), "utf8")).toBe("s");
  });

  test("file - relative and percent-encoded URLs resolve like paths", async () => {
    const cwd = vi.spyOn(process, "cwd").mockReturnValue(base);
    try {
      expect((openObjectStore("file://./rel/dir") as FileStore).root).toBe(join(base, "rel/dir"));
      expect((openObjectStore("file://../up") as FileStore).root).toBe(join(base, "../up"));
    } finally {
      cwd.mockRestore();
    }
    expect((openObjectStore("file:///data/my%20ckpt") as FileStore).root).toBe("/data/my ckpt");
    expect((openObjectStore("file://localhost/data/ckpt") as FileStore).root).toBe("/data/ckpt");
    for (const url of [
      "file://",
      "file:///",
      "file:///data?x=1",
      "file://host.example/data",
      "file://rel/dir",
    ])
      expect(() => openObjectStore(url), url).toThrow(FleetlinkError);
  });

  test("file - list skips in-flight temp files and such names are reserved", async () => {
    const store = openObjectStore(`file://${base}`);
    await store.put("d/real", bytes("r"));
    writeFileSync(join(base, "d", ".x.abc123.fleetlink-partial"), "half");
    expect(await store.list("")).toEqual([{ key: "d/real", size: 1 }]);
    await rejectsWith(store.put("d/x.fleetlink-partial", bytes("x")), "INVALID_ARGUMENT", "key");
  });

  test("file - an object where a directory is needed (or the reverse) is INVALID_ARGUMENT", async () => {
    const store = openObjectStore(`file://${base}`);
    await store.put("a/b", bytes("x"));
    await rejectsWith(store.put("a/b/c", bytes("y")), "INVALID_ARGUMENT", "key");
    await rejectsWith(store.put("a", bytes("y")), "INVALID_ARGUMENT", "key");
    expect(walk(base)).toEqual(["a/b"]);
  });

  test("file - delete prunes emptied directories but never the root", async () => {
    const store = openObjectStore(`file://${base}/root`);
    await store.put("r/c/h0/s", bytes("x"));
    await store.put("r/d/h0/s", bytes("x"));
    await store.delete(["r/c/h0/s"]);
    expect(readdirSync(join(base, "root/r"))).toEqual(["d"]);
    await store.delete(["r/d/h0/s"]);
    expect(readdirSync(join(base, "root"))).toEqual([]);
    expect(statSync(join(base, "root")).isDirectory()).toBe(true);
  });

  test("file - a store whose directory does not exist yet lists nothing and reads nothing", async () => {
    const store = openObjectStore(`file://${base}/not/yet`);
    expect(await store.list("")).toEqual([]);
    expect(await store.head("x")).toBeNull();
    await rejectsWith(store.get("x"), "CHECKPOINT_NOT_FOUND");
  });

  // Tests run as root here, which writes anywhere, so the errno mapping is checked on the errors themselves.
  test("file - permission errors (EACCES, EPERM) are OBJECT_STORE_AUTH, I/O errors OBJECT_STORE_UNAVAILABLE", () => {
    const errno = (code: string) => Object.assign(new Error(`${code}: denied`), { code });
    for (const code of ["EACCES", "EPERM"]) {
      const e = fsError(errno(code), "k") as FleetlinkError;
      expect(e.code).toBe("FLEETLINK_E_OBJECT_STORE_AUTH");
      expect(errorKind(e)).toBe("auth");
      expect((e.cause as { code: string }).code).toBe(code);
    }
    expect((fsError(errno("EIO"), "k") as FleetlinkError).code).toBe("FLEETLINK_E_OBJECT_STORE_UNAVAILABLE");
  });
});

describe("openObjectStore", () => {
  test("url - an unknown scheme is INVALID_ARGUMENT on url", () => {
    for (const url of ["gs://bucket/x", "/plain/path", "", "S3://bucket"]) {
      const e = (() => {
        try {
          openObjectStore(url);
        } catch (err) {
          return err;
        }
      })();
      expect(e, url).toBeInstanceOf(FleetlinkError);
      expect((e as FleetlinkError).kind).toBe("INVALID_ARGUMENT");
      expect((e as FleetlinkError).field).toBe("url");
    }
  });

  test("s3 - the AWS SDK is loaded on first use; without it, UNSUPPORTED_STORE names the packages", () => {
    // A fresh process in which every @aws-sdk/* package is missing (a resolve hook refuses them), and which
    // reports whether any AWS SDK module got loaded by the time the store was opened.
    const hook = `import { registerHooks } from "node:module";
      registerHooks({ resolve(spec, ctx, next) {
        if (spec.startsWith("@aws-sdk/")) throw Object.assign(new Error("Cannot find package '" + spec + "'"), { code: "ERR_MODULE_NOT_FOUND" });
        return next(spec, ctx);
      } });`;
    const script = `
      const { openObjectStore, preloadObjectStore } = await import(${JSON.stringify(new URL("../../src/checkpoint/open.ts", import.meta.url).href)});
      const out = {};
      await preloadObjectStore("file:///tmp/x");
      try { await preloadObjectStore("s3://bucket/prefix"); } catch (e) { out.preload = e.kind; }
      const s3 = openObjectStore("s3://bucket/prefix", { endpoint: "http://127.0.0.1:1" });
      out.url = s3.url;
      try { openObjectStore("s3://bucket/p?partSizeBytes=1"); } catch (e) { out.invalid = e.kind; }
      await s3.close();
      for (const op of [() => s3.list(""), () => s3.head("k")])
        try { await op(); } catch (e) { (out.errors ??= []).push({ kind: e.kind, message: e.message, cause: e.cause?.code }); }
      await s3.close();
      process.stdout.write(JSON.stringify(out));`;
    const r = runHookedScript(hook, script, 30_000);
    expect(r.stderr).toBe("");
    const out = JSON.parse(r.stdout);
    expect(out.url).toBe("s3://bucket/prefix");
    expect(out.invalid).toBe("INVALID_ARGUMENT"); // the URL is still checked at open, without the SDK
    expect(out.preload).toBe("UNSUPPORTED_STORE"); // what `serve` and `node` run at start-up for an s3:// store
    expect(out.errors).toHaveLength(2);
    for (const e of out.errors) {
      expect(e.kind).toBe("UNSUPPORTED_STORE");
      expect(e.message).toContain("npm install @aws-sdk/client-s3 @aws-sdk/lib-storage");
      expect(e.cause).toBe("ERR_MODULE_NOT_FOUND");
    }
  });

  test("s3 - loadS3Backend passes through a failure that is not a missing SDK package", async () => {
    const other = Object.assign(new Error("Cannot find package 'left-pad'"), {
      code: "ERR_MODULE_NOT_FOUND",
    });
    await expect(loadS3Backend(() => Promise.reject(other))).rejects.toBe(other);
    const syntax = new SyntaxError("@aws-sdk/client-s3: unexpected token");
    await expect(loadS3Backend(() => Promise.reject(syntax))).rejects.toBe(syntax);
  });

  test("errorKind - maps codes to the coarse kinds", () => {
    const cases = [
      ["OBJECT_STORE_AUTH", "auth"],
      ["CHECKPOINT_NOT_FOUND", "not_found"],
      ["OBJECT_STORE_UNAVAILABLE", "network"],
      ["STORE_UNAVAILABLE", "network"],
      ["CHECKSUM_MISMATCH", "checksum"],
      ["HOST_MISMATCH", "host_mismatch"],
      ["CONFLICT", "conflict"],
      ["INVALID_ARGUMENT", "invalid"],
      ["RUN_NOT_FOUND", "internal"],
    ] as const;
    for (const [code, kind] of cases) expect(errorKind(new FleetlinkError(code)), code).toBe(kind);
    expect(errorKind(new Error("x"))).toBe("internal");
    expect(errorKind("x")).toBe("internal");
  });
});

// ---------------------------------------------------------------- s3://

/** An HTTP proxy in front of s3rver that records each request line and request body size. */
const recordingProxy = async (target: string) => {
  const seen: string[] = [];
  const sizes: number[] = [];
  const up = new URL(target);
  const srv = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    let size = 0;
    req.on("data", (d: Buffer) => {
      size += d.byteLength;
    });
    req.on("end", () => sizes.push(size));
    const fwd = httpRequest(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    fwd.on("error", () => res.destroy());
    req.pipe(fwd);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return {
    endpoint: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`,
    seen,
    sizes,
    stop: async () => {
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    },
  };
};

describe("s3 (against s3rver over HTTP)", () => {
  let s3: S3rver;
  let raw: S3Client;
  let n = 0;
  const open = (prefix: string, opts: Partial<Parameters<typeof openObjectStore>[1]> = {}) =>
    openObjectStore(`s3://${s3.bucket}/${prefix}`, {
      endpoint: s3.endpoint,
      region: s3.region,
      accessKeyId: s3.accessKeyId,
      secretAccessKey: s3.secretAccessKey,
      partSizeBytes: 5 * MiB,
      ...opts,
    });
  /** Every key in the bucket under prefix, sorted. */
  const rawKeys = async (prefix: string): Promise<string[]> => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const res = await raw.send(
        new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const o of res.Contents ?? []) keys.push(o.Key!);
      token = res.NextContinuationToken;
    } while (token);
    return keys.sort();
  };

  beforeAll(async () => {
    s3 = await startS3rver();
    raw = new S3Client({
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
  });
  afterAll(async () => {
    raw?.destroy();
    await s3?.stop();
  });

  objectStoreConformance("s3", async () => {
    const dir = `t${++n}`;
    return {
      store: open(`${dir}/store`),
      leftovers: async () => (await rawKeys(`${dir}/`)).map((k) => k.slice(dir.length + 1)),
      cleanup: async () => {},
    };
  });

  test("s3 - keys live under the URL's prefix; url is as opened", async () => {
    const store = open("pre/fix");
    expect(store.url).toBe(`s3://${s3.bucket}/pre/fix`);
    await store.put("run/ckpt/host0/state", bytes("s"));
    expect(await rawKeys("pre/")).toEqual(["pre/fix/run/ckpt/host0/state"]);
    await store.delete(["run/ckpt/host0/state"]);
    await store.close();
  });

  test("s3 - a 20 MiB body goes up as a multipart upload of 5 MiB parts", async () => {
    const proxy = await recordingProxy(s3.endpoint);
    try {
      const store = open(`mp${++n}`, { endpoint: proxy.endpoint });
      const data = randomBytes(20 * MiB + 1);
      const res = await store.put("big", streamOf(data));
      expect(res).toEqual({ size: data.byteLength, sha256: sha256(data) });
      const path = `/${s3.bucket}/mp${n}/big`;
      const parts = proxy.seen.filter((r) => r.startsWith(`PUT ${path}?`) && /partNumber=\d/.test(r));
      expect(parts.length).toBe(5); // 4 × 5 MiB + 1 byte
      expect(proxy.seen).toContainEqual(expect.stringMatching(new RegExp(`^POST ${path}\\?uploads`)));
      expect(proxy.seen).toContainEqual(expect.stringMatching(new RegExp(`^POST ${path}\\?uploadId=`)));
      expect(proxy.sizes.filter((b) => b === 5 * MiB).length).toBe(4);
      expect(Buffer.from(await store.getBytes("big")).equals(data)).toBe(true);
      await store.close();
    } finally {
      await proxy.stop();
    }
  });

  test("s3 - bytes already in memory go up in one PutObject (no multipart assembly on the server)", async () => {
    const proxy = await recordingProxy(s3.endpoint);
    try {
      const store = open(`mem${++n}`, { endpoint: proxy.endpoint });
      const data = randomBytes(20 * MiB + 1);
      expect(await store.put("big", new Uint8Array(data))).toEqual({
        size: data.byteLength,
        sha256: sha256(data),
      });
      expect(proxy.seen).toEqual([`PUT /${s3.bucket}/mem${n}/big?x-id=PutObject`]);
      expect(Buffer.from(await store.getBytes("big")).equals(data)).toBe(true);
      await store.close();
    } finally {
      await proxy.stop();
    }
  });

  test("s3 - a small body goes up in one PutObject", async () => {
    const proxy = await recordingProxy(s3.endpoint);
    try {
      const store = open(`sp${++n}`, { endpoint: proxy.endpoint });
      await store.put("small", streamOf(randomBytes(1 * MiB)));
      expect(proxy.seen).toEqual([`PUT /${s3.bucket}/sp${n}/small?x-id=PutObject`]);
      await store.close();
    } finally {
      await proxy.stop();
    }
  });

  test("s3 - an unknown access key is OBJECT_STORE_AUTH on every operation, cause kept", async () => {
    const good = open("auth");
    await good.put("k", bytes("x"));
    const bad = open("auth", { accessKeyId: "NOT-A-KEY", secretAccessKey: "whatever" });
    const e = await rejectsWith(bad.put("k2", bytes("x")), "OBJECT_STORE_AUTH");
    expect(errorKind(e)).toBe("auth");
    expect((e.cause as Error).name).toBe("InvalidAccessKeyId");
    await rejectsWith(bad.put("big", streamOf(randomBytes(11 * MiB))), "OBJECT_STORE_AUTH");
    await rejectsWith(bad.get("k"), "OBJECT_STORE_AUTH");
    await rejectsWith(bad.getBytes("k"), "OBJECT_STORE_AUTH");
    await rejectsWith(bad.head("k"), "OBJECT_STORE_AUTH"); // HEAD has no body: mapped by its 403
    await rejectsWith(bad.list(""), "OBJECT_STORE_AUTH");
    await rejectsWith(bad.delete(["k"]), "OBJECT_STORE_AUTH");
    expect(await good.list("")).toEqual([{ key: "k", size: 1 }]);
    await Promise.all([good.close(), bad.close()]);
  });

  test("s3 - credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and settings from the URL query", async () => {
    vi.stubEnv("AWS_ACCESS_KEY_ID", s3.accessKeyId);
    vi.stubEnv("AWS_SECRET_ACCESS_KEY", s3.secretAccessKey);
    try {
      const store = openObjectStore(
        `s3://${s3.bucket}/q?endpoint=${encodeURIComponent(s3.endpoint)}&region=us-east-1&forcePathStyle=true`,
      );
      await store.put("k", bytes("via env"));
      expect(await store.getBytes("k")).toEqual(bytes("via env"));
      await store.close();
      vi.stubEnv("AWS_ACCESS_KEY_ID", "NOT-A-KEY");
      const bad = openObjectStore(`s3://${s3.bucket}/q?endpoint=${encodeURIComponent(s3.endpoint)}`);
      await rejectsWith(bad.head("k"), "OBJECT_STORE_AUTH");
      await bad.close();
    } finally {
      vi.unstubAllEnvs();
    }
  });

  test("s3 - a missing bucket is INVALID_ARGUMENT on url", async () => {
    const store = openObjectStore("s3://no-such-bucket/x", {
      endpoint: s3.endpoint,
      accessKeyId: s3.accessKeyId,
      secretAccessKey: s3.secretAccessKey,
    });
    await rejectsWith(store.put("k", bytes("x")), "INVALID_ARGUMENT", "url");
    await rejectsWith(store.list(""), "INVALID_ARGUMENT", "url");
    await store.close();
  });

  test("s3 - a refused connection is OBJECT_STORE_UNAVAILABLE on every operation", async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, "127.0.0.1", () => {
        const p = (srv.address() as AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const store = open("x", { endpoint: `http://127.0.0.1:${port}` });
    const e = await rejectsWith(store.put("k", bytes("x")), "OBJECT_STORE_UNAVAILABLE");
    expect(errorKind(e)).toBe("network");
    expect(e.definite).toBe(false);
    expect((e.cause as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
    await rejectsWith(store.get("k"), "OBJECT_STORE_UNAVAILABLE");
    await rejectsWith(store.head("k"), "OBJECT_STORE_UNAVAILABLE");
    await rejectsWith(store.list(""), "OBJECT_STORE_UNAVAILABLE");
    await rejectsWith(store.delete(["k"]), "OBJECT_STORE_UNAVAILABLE");
    await store.close();
  });

  test("s3 - a server answering 503 is OBJECT_STORE_UNAVAILABLE after the SDK's retries", async () => {
    let hits = 0;
    const srv: Server = createServer((req, res) => {
      hits++;
      req.resume();
      res.writeHead(503, { "content-type": "application/xml" });
      res.end(
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>down</Message></Error>',
      );
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    try {
      const store = open("x", { endpoint: `http://127.0.0.1:${(srv.address() as AddressInfo).port}` });
      await rejectsWith(store.getBytes("k"), "OBJECT_STORE_UNAVAILABLE");
      await rejectsWith(store.head("k"), "OBJECT_STORE_UNAVAILABLE");
      expect(hits).toBeGreaterThanOrEqual(2); // retried before giving up
      await store.close();
    } finally {
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    }
  });
});

describe("s3 configuration and error mapping", () => {
  const env = {} as NodeJS.ProcessEnv;

  test("config - options beat URL query beat environment; defaults", () => {
    const e = {
      AWS_ENDPOINT_URL: "http://env:1",
      AWS_REGION: "eu-west-1",
    } as NodeJS.ProcessEnv;
    expect(resolveS3Config("s3://b/p", {}, e)).toMatchObject({
      bucket: "b",
      prefix: "p/",
      endpoint: "http://env:1",
      region: "eu-west-1",
      forcePathStyle: true,
      partSizeBytes: 8 * MiB,
      credentials: undefined,
    });
    expect(
      resolveS3Config("s3://b/p/?endpoint=http%3A%2F%2Fq%3A2&region=q-1&forcePathStyle=false", {}, e),
    ).toMatchObject({ prefix: "p/", endpoint: "http://q:2", region: "q-1", forcePathStyle: false });
    expect(
      resolveS3Config("s3://b?endpoint=http://q:2&region=q-1", { endpoint: "http://o:3", region: "o-1" }, e),
    ).toMatchObject({ prefix: "", endpoint: "http://o:3", region: "o-1" });
    expect(resolveS3Config("s3://b", {}, { AWS_ENDPOINT_URL_S3: "http://s3only:4" }).endpoint).toBe(
      "http://s3only:4",
    );
    expect(resolveS3Config("s3://b/a/b", {}, env)).toMatchObject({
      endpoint: undefined,
      region: "us-east-1",
      forcePathStyle: false,
      prefix: "a/b/",
    });
    expect(resolveS3Config("s3://b", { accessKeyId: "A", secretAccessKey: "S" }, env).credentials).toEqual({
      accessKeyId: "A",
      secretAccessKey: "S",
    });
  });

  test("config - credentials in the URL, unknown parameters and bad values are INVALID_ARGUMENT", () => {
    const bad: [string, object, string][] = [
      ["s3://AKIA:secret@bucket/p", {}, "url"],
      ["s3://bucket/p?accessKeyId=AKIA", {}, "url"],
      ["s3://bucket/p?secretAccessKey=TOPSECRETVALUE", {}, "url"],
      ["s3://bucket/p?sessionToken=TOPSECRETVALUE", {}, "url"],
      ["s3://AKIA:TOPSECRETVALUE@bucket/p", {}, "url"],
      ["s3://bucket/p?endpont=http://x", {}, "url"],
      ["s3://bucket/p?forcePathStyle=maybe", {}, "url"],
      ["s3://", {}, "url"],
      ["s3:///p", {}, "url"],
      ["s3://bucket//p", {}, "url"],
      ["s3://bucket/../p", {}, "url"],
      ["s3://bucket/p#frag", {}, "url"],
      ["s3://bucket/p?endpoint=ftp://x", {}, "endpoint"],
      ["s3://bucket/p", { partSizeBytes: 4 * MiB }, "partSizeBytes"],
      ["s3://bucket/p?partSizeBytes=abc", {}, "partSizeBytes"],
      ["s3://bucket/p", { accessKeyId: "A" }, "accessKeyId"],
    ];
    for (const [url, opts, field] of bad) {
      let err: unknown;
      try {
        resolveS3Config(url, opts, env);
      } catch (e) {
        err = e;
      }
      expect(err, url).toBeInstanceOf(FleetlinkError);
      expect((err as FleetlinkError).kind, url).toBe("INVALID_ARGUMENT");
      expect((err as FleetlinkError).field, url).toBe(field);
      expect((err as FleetlinkError).message, url).not.toContain("TOPSECRETVALUE");
    }
  });

  test("errors - SDK error shapes s3rver cannot produce map to the same codes", () => {
    // s3rver checks the access key id but never verifies a SigV4 signature, and has no bucket
    // policies: a wrong secret or a denied action cannot be provoked against it.
    const sdk = (name: string, status?: number) =>
      Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });
    const cases: [unknown, string][] = [
      [sdk("SignatureDoesNotMatch", 403), "OBJECT_STORE_AUTH"],
      [sdk("AccessDenied", 403), "OBJECT_STORE_AUTH"],
      [sdk("ExpiredToken", 400), "OBJECT_STORE_AUTH"],
      [sdk("Unknown", 401), "OBJECT_STORE_AUTH"],
      [sdk("CredentialsProviderError"), "OBJECT_STORE_AUTH"],
      [sdk("NoSuchKey", 404), "CHECKPOINT_NOT_FOUND"],
      [sdk("InternalError", 500), "OBJECT_STORE_UNAVAILABLE"],
      [sdk("SlowDown", 503), "OBJECT_STORE_UNAVAILABLE"],
      [sdk("TimeoutError"), "OBJECT_STORE_UNAVAILABLE"],
      [
        Object.assign(new Error("getaddrinfo ENOTFOUND x"), { code: "ENOTFOUND" }),
        "OBJECT_STORE_UNAVAILABLE",
      ],
      [Object.assign(new AggregateError([], "x"), { code: "ECONNREFUSED" }), "OBJECT_STORE_UNAVAILABLE"],
      [sdk("PermanentRedirect", 301), "INVALID_ARGUMENT"],
    ];
    for (const [e, kind] of cases) {
      const mapped = s3Error(e, "get", "k");
      expect(mapped, String(e)).toBeInstanceOf(FleetlinkError);
      expect((mapped as FleetlinkError).kind, String(e)).toBe(kind);
      expect((mapped as FleetlinkError).cause).toBe(e);
    }
    const other = sdk("EntityTooLarge", 400);
    expect(s3Error(other, "put", "k")).toBe(other);
  });

  test("S3Store - open validates before any network use", () => {
    expect(() => S3Store.open("s3://b/p?partSizeBytes=1", {})).toThrow(FleetlinkError);
  });
});
