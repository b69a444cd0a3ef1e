import { BLOB_KEY, type BlobInfo, BYTES_KEY, blobRef, readBlobRef } from "../protocol/blobs.ts";
import { invalid } from "../protocol/errors.ts";
import { MAX_JSON_DEPTH } from "../protocol/limits.ts";
import { FleetBlob } from "./handle.ts";

/**
 * Payload codec: binary data in a payload travels as `{ $bytes: base64 }` (small) or as a blob reference
 * `{ $blob, size }` (uploaded first), and comes back as bytes or as a lazy FleetBlob (protocol/blobs.ts).
 *
 * Binary data means a Uint8Array (Buffer included), any other ArrayBuffer view (typed arrays, DataView) and
 * an ArrayBuffer: all are sent as their bytes and received as a Buffer (a Float32Array arrives as the Buffer
 * of its bytes, in the sender's byte order: view it again with `new Float32Array(b.buffer, b.byteOffset, …)`).
 *
 * Both directions first scan the payload without building anything (no path strings, no copies): a payload
 * with no binary data and no reserved key is returned as it is, so plain JSON payloads cost one walk.
 */

/** How a received `$blob` reference is handed to the user: its bytes in memory, or a lazy handle. */
export type BlobMode = "bytes" | "lazy";

export interface EncodeOptions {
  /** Bytes up to this size travel inline as base64; larger ones are uploaded. */
  inlineBytes: number;
  /** Uploads bytes over the threshold; resolves with the blob they became. */
  upload: (bytes: Uint8Array) => Promise<BlobInfo>;
}

export interface DecodeOptions {
  /** (Default: "bytes") */
  mode?: BlobMode;
  /** Makes a handle for a referenced blob (the client's, so it can download it). */
  handle: (blob: BlobInfo) => FleetBlob;
  signal?: AbortSignal;
}

type Scan = "none" | "work";

const isBinary = (v: object): v is ArrayBufferView | ArrayBuffer =>
  ArrayBuffer.isView(v) || v instanceof ArrayBuffer;

const asBytes = (v: ArrayBufferView | ArrayBuffer): Uint8Array =>
  v instanceof Uint8Array
    ? v
    : ArrayBuffer.isView(v)
      ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
      : new Uint8Array(v);

/** Objects JSON.stringify reads through toJSON (a Date) are left as they are. */
const opaque = (v: object): boolean => typeof (v as { toJSON?: unknown }).toJSON === "function";

/** Children of a container, as [key, value] pairs; none for leaves. */
const children = (v: object): [string | number, unknown][] =>
  Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);

const pathOf = (parent: string, key: string | number): string =>
  typeof key === "number" ? `${parent}[${key}]` : `${parent}.${key}`;

/**
 * True when the value holds binary data or a handle (needs encoding); throws on a reserved key. Each
 * container is visited once and no deeper than the payload depth limit, so a cyclic or over-deep value ends
 * the scan (JSON encoding and the depth check refuse it afterwards, as they did before binary data).
 */
/** Containers the scan visits before it starts tracking visited ones (see scanOut). */
const UNTRACKED_VISITS = 100_000;

const scanOut = (value: unknown, root: string, tracked = false): Scan => {
  if (typeof value !== "object" || value === null) return "none";
  let found: Scan = "none";
  // Without a visited set at first (it doubles the cost): within the depth limit a tree ends, and only a
  // cycle (or a DAG with much sharing) makes the walk long, which the visit count catches.
  const seen = tracked ? new Set<object>() : null;
  let visits = 0;
  // Parallel stacks (no tuple per node) and only objects pushed: the scan costs about what JSON.stringify does.
  const values: object[] = [value];
  const depths: number[] = [0];
  while (values.length > 0) {
    const v = values.pop()!;
    const depth = depths.pop()!;
    if (depth > MAX_JSON_DEPTH) continue;
    if (seen) {
      if (seen.has(v)) continue;
      seen.add(v);
    } else if (++visits > UNTRACKED_VISITS) return scanOut(value, root, true);
    if (v instanceof FleetBlob || isBinary(v)) {
      found = "work";
      continue;
    }
    if (opaque(v)) continue;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const x = v[i];
        if (typeof x === "object" && x !== null) {
          values.push(x);
          depths.push(depth + 1);
        }
      }
      continue;
    }
    if (Object.hasOwn(v, BLOB_KEY) || Object.hasOwn(v, BYTES_KEY)) throw reservedAt(value, root);
    const keys = Object.keys(v);
    for (let i = 0; i < keys.length; i++) {
      const x = (v as Record<string, unknown>)[keys[i]!];
      if (typeof x === "object" && x !== null) {
        values.push(x);
        depths.push(depth + 1);
      }
    }
  }
  return found;
};

/** The error for the first user object with a reserved key, found again with paths (the rare, slow case). */
const reservedAt = (value: unknown, root: string) => {
  const seen = new Set<object>();
  const stack: [unknown, string][] = [[value, root]];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v !== "object" || v === null || v instanceof FleetBlob || isBinary(v) || opaque(v)) continue;
    if (seen.has(v)) continue;
    seen.add(v);
    if (!Array.isArray(v) && (Object.hasOwn(v, BLOB_KEY) || Object.hasOwn(v, BYTES_KEY)))
      return invalid(
        path,
        `an object with a "${BLOB_KEY}" or "${BYTES_KEY}" key is reserved for binary data; rename the key`,
      );
    for (const [k, x] of children(v).reverse()) stack.push([x, pathOf(path, k)]);
  }
  return invalid(root, "reserved key");
};

/**
 * Copies the containers of `value`, replacing each leaf `replace` returns something for (sync or a promise
 * filled in afterwards). Iterative: any depth is safe. Leaves are visited in document order.
 */
const rebuild = async (
  value: unknown,
  root: string,
  replace: (v: object, path: string) => unknown | Promise<unknown> | undefined,
  descend: (v: object) => boolean,
): Promise<unknown> => {
  const holder: { v: unknown } = { v: undefined };
  const later: Promise<void>[] = [];
  try {
    walk(value, root, replace, descend, holder, later);
  } catch (e) {
    // A malformed or over-deep part found after some transfers started: those go on without a reader, so
    // their failures must not surface as unhandled rejections (they would end the process).
    for (const p of later) p.catch(() => {});
    throw e;
  }
  await Promise.all(later);
  return holder.v;
};

/** The synchronous part of rebuild: copies containers, starts the transfers and collects them in `later`. */
const walk = (
  value: unknown,
  root: string,
  replace: (v: object, path: string) => unknown | Promise<unknown> | undefined,
  descend: (v: object) => boolean,
  holder: { v: unknown },
  later: Promise<void>[],
): void => {
  const stack: [unknown, Record<string | number, unknown>, string | number, string, number][] = [
    [value, holder as unknown as Record<string, unknown>, "v", root, 0],
  ];
  while (stack.length > 0) {
    const [v, parent, key, path, depth] = stack.pop()!;
    if (typeof v !== "object" || v === null) {
      parent[key] = v;
      continue;
    }
    const r = replace(v, path);
    if (r !== undefined) {
      if (r instanceof Promise)
        later.push(
          r.then((x) => {
            parent[key] = x;
          }),
        );
      else parent[key] = r;
      continue;
    }
    if (!descend(v)) {
      parent[key] = v;
      continue;
    }
    // A cycle would be copied forever: past the depth limit the payload is refused, as the hub would.
    if (depth >= MAX_JSON_DEPTH)
      throw invalid(path, `nests deeper than ${MAX_JSON_DEPTH} levels (or is cyclic)`);
    const copy: Record<string | number, unknown> = (Array.isArray(v) ? new Array(v.length) : {}) as Record<
      string | number,
      unknown
    >;
    parent[key] = copy;
    const kids = children(v);
    for (let i = kids.length - 1; i >= 0; i--)
      stack.push([kids[i]![1], copy, kids[i]![0], pathOf(path, kids[i]![0]), depth + 1]);
  }
};

/**
 * The payload as it goes on the wire: binary data over `inlineBytes` uploaded and replaced by its reference,
 * smaller binary data by `{ $bytes }`, handles by their reference. A user object with a `$blob` or `$bytes`
 * key is refused (INVALID_ARGUMENT naming its path), since the receiver would read it as binary data.
 */
export const encodePayload = async (value: unknown, o: EncodeOptions, root = "payload"): Promise<unknown> => {
  if (scanOut(value, root) === "none") return value;
  // The same buffer in many places of this one payload is hashed and uploaded once (a broadcast encodes its
  // payload once for all nodes). Never across calls: a buffer updated in place between two pushes must send
  // its new bytes, and a blob from an earlier push may have been collected since.
  const seen = new Map<object, Promise<BlobInfo>>();
  const upload = (v: object, bytes: Uint8Array): Promise<BlobInfo> => {
    let p = seen.get(v);
    if (!p) {
      p = o.upload(bytes);
      seen.set(v, p);
    }
    return p;
  };
  return rebuild(
    value,
    root,
    (v) => {
      if (v instanceof FleetBlob) return blobRef(v);
      if (!isBinary(v)) return undefined;
      const bytes = asBytes(v);
      if (bytes.byteLength <= o.inlineBytes)
        return {
          [BYTES_KEY]: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64"),
        };
      return upload(v, bytes).then(blobRef);
    },
    (v) => !opaque(v),
  );
};

/** True when a received value holds a `$blob` or `$bytes` object (needs decoding). */
const scanIn = (value: unknown): Scan => {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== "object" || v === null) continue;
    if (Array.isArray(v)) {
      for (const x of v) stack.push(x);
      continue;
    }
    if (Object.hasOwn(v, BLOB_KEY) || Object.hasOwn(v, BYTES_KEY)) return "work";
    for (const k in v) if (Object.hasOwn(v, k)) stack.push((v as Record<string, unknown>)[k]);
  }
  return "none";
};

/**
 * A received payload for the user: `{ $bytes }` → Buffer; `{ $blob }` → a Buffer of its bytes (mode "bytes",
 * downloaded through the cache, all at once) or a lazy FleetBlob (mode "lazy"). A malformed reserved object
 * is refused naming its path.
 */
export const decodePayload = async (value: unknown, o: DecodeOptions, root = "payload"): Promise<unknown> => {
  if (scanIn(value) === "none") return value;
  const mode = o.mode ?? "bytes";
  return rebuild(
    value,
    root,
    (v, path) => {
      if (Array.isArray(v)) return undefined;
      if (Object.hasOwn(v, BYTES_KEY)) {
        const b64 = (v as Record<string, unknown>)[BYTES_KEY];
        if (typeof b64 !== "string" || Object.keys(v).length !== 1)
          throw invalid(path, `"${BYTES_KEY}" must be the only key, holding a base64 string`);
        return Buffer.from(b64, "base64");
      }
      if (!Object.hasOwn(v, BLOB_KEY)) return undefined;
      const ref = readBlobRef(v);
      if (!ref)
        throw invalid(path, `malformed blob reference (expected { "$blob": "sha256:<hex>", "size": n })`);
      const h = o.handle(ref);
      return mode === "lazy" ? h : h.bytes({ signal: o.signal });
    },
    () => true,
  );
};

/** Refuses bad blob options of a Fleet or a NodeAgent, naming the option. */
export const checkBlobOptions = (o: {
  blobs?: unknown;
  inlineBytes?: unknown;
  blobCacheBytes?: unknown;
}): void => {
  if (o.blobs !== undefined && o.blobs !== "bytes" && o.blobs !== "lazy")
    throw invalid("blobs", `"bytes" or "lazy", not ${JSON.stringify(o.blobs)}`);
  for (const k of ["inlineBytes", "blobCacheBytes"] as const) {
    const v = o[k];
    if (v !== undefined && (!Number.isSafeInteger(v) || (v as number) < 0))
      throw invalid(k, `a whole number of bytes ≥ 0, not ${JSON.stringify(v)}`);
  }
};
