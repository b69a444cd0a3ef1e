// The interface every object store implements and the helpers the backends share; open.ts alone knows the
// backends (so that this file, which everyone imports, loads neither).
import { createHash } from "node:crypto";
import { Readable, Transform } from "node:stream";
import { invalid, isFleetlinkError } from "../protocol/errors.ts";

export interface PutResult {
  size: number;
  /** Hex sha256 of the bytes written. */
  sha256: string;
}

export interface ObjectInfo {
  key: string;
  size: number;
}

/**
 * Where checkpoints live: `file://DIR` or `s3://BUCKET/PREFIX`. Keys are `/`-separated and relative
 * to the store's prefix; a reader never sees a partly written object.
 */
export interface ObjectStore {
  /** As opened, without credentials. */
  readonly url: string;
  /** Streams body to key (multipart upload for large bodies on S3). Computes size + sha256 while streaming. Overwrites. */
  put(key: string, body: Readable | Uint8Array): Promise<PutResult>;
  /** Streams the object; rejects FleetlinkError CHECKPOINT_NOT_FOUND if missing. */
  get(key: string): Promise<Readable>;
  getBytes(key: string): Promise<Uint8Array>;
  /** null if missing */
  head(key: string): Promise<ObjectInfo | null>;
  /** Every object whose key starts with prefix (recursive), sorted by key. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** Deletes these keys; missing keys are not an error. */
  delete(keys: readonly string[]): Promise<void>;
  /**
   * Deletes what writers killed mid-put left under prefix: objects `list` never shows, so garbage collection by
   * key would never find them. `stale` is a time (ms since the epoch: those last touched before it), or says
   * of each remain, by its path below the root and when it was last touched, whether it goes. Returns how
   * many. Absent where the backend leaves no such remains or cannot see them (S3: see docs/sdk.md, Checkpoints).
   */
  removeStalePartials?(
    prefix: string,
    stale: number | ((path: string, mtimeMs: number) => boolean),
  ): Promise<number>;
  close(): Promise<void>;
}

/** S3 settings; each falls back to the URL's query parameter, then to the usual AWS environment variable. */
export interface S3Options {
  /** e.g. `http://127.0.0.1:9000`. (Default: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, else AWS) */
  endpoint?: string;
  /** (Default: `AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-east-1`) */
  region?: string;
  /** Address buckets as `ENDPOINT/BUCKET` rather than `BUCKET.ENDPOINT`. (Default: true when an endpoint is set) */
  forcePathStyle?: boolean;
  /** With secretAccessKey. (Default: the AWS SDK's credential chain: `AWS_ACCESS_KEY_ID`, profiles, …) */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Multipart part size; S3 needs at least 5 MiB. (Default: 8 MiB) */
  partSizeBytes?: number;
}

/** Every kind errorKind returns; docs/sdk.md lists the same (test/checkpoint/readme.test.ts keeps them in step). */
export const ERROR_KINDS = [
  "auth",
  "not_found",
  "network",
  "checksum",
  "host_mismatch",
  "host_unavailable",
  "timeout",
  "conflict",
  "invalid",
  "internal",
] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

/** A coarse class of error for reports and retry decisions. */
export const errorKind = (e: unknown): ErrorKind => {
  if (!isFleetlinkError(e)) return "internal";
  switch (e.kind) {
    // The node is gone (missed its heartbeat window, unregistered, unreachable): not a hub bug.
    case "NODE_UNAVAILABLE":
    case "NODE_UNREGISTERED":
    case "NODE_NOT_FOUND":
    case "DELIVERY_FAILED":
    case "STREAM_CLOSED":
      return "host_unavailable";
    // Online, but no answer in time.
    case "MESSAGE_EXPIRED":
      return "timeout";
    case "OBJECT_STORE_AUTH":
      return "auth";
    case "CHECKPOINT_NOT_FOUND":
      return "not_found";
    case "OBJECT_STORE_UNAVAILABLE":
    case "STORE_UNAVAILABLE":
      return "network";
    case "CHECKSUM_MISMATCH":
      return "checksum";
    case "HOST_MISMATCH":
      return "host_mismatch";
    case "CONFLICT":
      return "conflict";
    case "INVALID_ARGUMENT":
      return "invalid";
    default:
      return "internal";
  }
};

// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is exactly what it rejects
const BAD_CHARS = /[\u0000\\]/;

/**
 * Throws INVALID_ARGUMENT (field `key`) unless key is relative, `/`-separated, with no empty, `.` or
 * `..` segment, no backslash and no NUL: such a key means the same object on every backend and
 * can never escape the store's directory or prefix.
 */
export const checkKey = (key: string, field = "key"): void => {
  if (typeof key !== "string" || key === "") throw invalid(field, "must be a non-empty string");
  if (BAD_CHARS.test(key))
    throw invalid(field, `must not contain a backslash or NUL: ${JSON.stringify(key)}`);
  if (key.startsWith("/")) throw invalid(field, `must be relative: ${JSON.stringify(key)}`);
  for (const seg of key.split("/")) {
    if (seg === "" || seg === "." || seg === "..")
      throw invalid(field, `must not have empty, "." or ".." segments: ${JSON.stringify(key)}`);
  }
};

/** Like checkKey, but "" (everything) and a trailing `/` are allowed. */
export const checkPrefix = (prefix: string): void => {
  if (prefix === "") return;
  checkKey(prefix.endsWith("/") ? prefix.slice(0, -1) : prefix, "prefix");
};

/** A pass-through that counts and hashes what flows through it; read `result()` once it has ended. */
export const hashingTap = (): Transform & { result: () => PutResult } => {
  const hash = createHash("sha256");
  let size = 0;
  const tap = new Transform({
    transform(chunk: unknown, _enc, cb) {
      if (typeof chunk === "string") chunk = Buffer.from(chunk);
      if (!(chunk instanceof Uint8Array)) {
        cb(invalid("body", "must be a stream of bytes, not of objects"));
        return;
      }
      hash.update(chunk);
      size += chunk.byteLength;
      cb(null, chunk);
    },
  });
  let done: PutResult | undefined;
  return Object.assign(tap, {
    result: (): PutResult => {
      done ??= { size, sha256: hash.digest("hex") };
      return done;
    },
  });
};

/** The body as a stream of Buffers (a Uint8Array becomes a single chunk). */
export const toReadable = (body: Readable | Uint8Array): Readable =>
  body instanceof Uint8Array
    ? Readable.from([Buffer.from(body.buffer, body.byteOffset, body.byteLength)])
    : body;

/** Reads a stream to its end into one plain Uint8Array. */
export const readAll = async (stream: Readable): Promise<Uint8Array> => {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  const buf = Buffer.concat(chunks);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
};
