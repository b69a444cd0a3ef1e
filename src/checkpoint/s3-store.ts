import { createHash } from "node:crypto";
import { PassThrough, pipeline, Readable } from "node:stream";
import {
  DeleteObjectsCommand,
  type DeleteObjectsCommandOutput,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { FleetlinkError } from "../protocol/errors.ts";
import {
  checkKey,
  checkPrefix,
  hashingTap,
  type ObjectInfo,
  type ObjectStore,
  type PutResult,
  readAll,
  type S3Options,
  toReadable,
} from "./object-store.ts";
import { resolveS3Config, type S3Config } from "./s3-config.ts";

const MiB = 1024 * 1024;
/** In-memory bodies up to this size are sent in one PutObject. */
const SINGLE_PUT_MAX = 256 * MiB;
/** DeleteObjects takes at most this many keys. */
const DELETE_BATCH = 1000;

/** An S3 client as fleetlink uses one, for checkpoints and for blobs alike. */
export const s3Client = (config: S3Config): S3Client =>
  new S3Client({
    region: config.region,
    ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
    forcePathStyle: config.forcePathStyle,
    ...(config.credentials === undefined ? {} : { credentials: config.credentials }),
    // The SDK's newer default (CRC checksums, aws-chunked bodies) is not understood by every
    // S3-compatible server; we hash every object ourselves (the checkpoint manifest, the blob's sha256).
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    // Without a connect timeout a black-holed endpoint hangs forever; the idle timeout catches a
    // server that stops answering mid-transfer.
    requestHandler: { connectionTimeout: 10_000, socketTimeout: 120_000 },
  });

/** Objects in an S3 bucket (or any S3-compatible server) under a key prefix. */
export class S3Store implements ObjectStore {
  readonly url: string;
  readonly config: S3Config;
  private readonly client: S3Client;

  constructor(url: string, config: S3Config) {
    this.url = url;
    this.config = config;
    this.client = s3Client(config);
  }

  static open(url: string, opts: S3Options = {}): S3Store {
    return new S3Store(url, resolveS3Config(url, opts));
  }

  private objectKey(key: string): string {
    checkKey(key);
    return this.config.prefix + key;
  }

  async put(key: string, body: Readable | Uint8Array): Promise<PutResult> {
    const Key = this.objectKey(key);
    // Bytes already in memory up to the single-PUT limit go up in one PutObject: multipart would cost the
    // server a second pass to assemble the parts (measured: bench:checkpoint). Streams and larger bodies
    // go up as a multipart upload.
    if (body instanceof Uint8Array && body.byteLength <= SINGLE_PUT_MAX) {
      const sha256 = createHash("sha256").update(body).digest("hex");
      try {
        await this.client.send(new PutObjectCommand({ Bucket: this.config.bucket, Key, Body: body }));
      } catch (e) {
        throw s3Error(e, "put", key);
      }
      return { size: body.byteLength, sha256 };
    }
    const tap = hashingTap();
    // A failing body destroys tap, so the upload fails too (and aborts its multipart upload).
    pipeline(toReadable(body), tap, () => {});
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.config.bucket, Key, Body: tap },
      partSize: this.config.partSizeBytes,
      queueSize: 4,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (e) {
      tap.destroy(); // stop reading the caller's stream
      throw s3Error(e, "put", key);
    }
    return tap.result();
  }

  async get(key: string): Promise<Readable> {
    const Key = this.objectKey(key);
    let body: unknown;
    try {
      body = (await this.client.send(new GetObjectCommand({ Bucket: this.config.bucket, Key }))).Body;
    } catch (e) {
      throw s3Error(e, "get", key);
    }
    if (!(body instanceof Readable)) throw new Error("S3 GetObject returned no Node.js stream");
    // Hand out a stream whose errors are FleetlinkErrors too (a reset mid-download is "network").
    const out = new PassThrough();
    body.on("error", (e) => out.destroy(s3Error(e, "get", key) as Error));
    out.on("close", () => {
      if (!body.readableEnded) body.destroy();
    });
    body.pipe(out);
    return out;
  }

  async getBytes(key: string): Promise<Uint8Array> {
    return readAll(await this.get(key));
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const Key = this.objectKey(key);
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key }));
      return { key, size: res.ContentLength ?? 0 };
    } catch (e) {
      const err = s3Error(e, "head", key);
      if (err instanceof FleetlinkError && err.kind === "CHECKPOINT_NOT_FOUND") return null;
      throw err;
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    checkPrefix(prefix);
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    try {
      do {
        const res = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.config.bucket,
            Prefix: this.config.prefix + prefix,
            ContinuationToken: token,
          }),
        );
        for (const o of res.Contents ?? [])
          if (o.Key !== undefined)
            out.push({ key: o.Key.slice(this.config.prefix.length), size: o.Size ?? 0 });
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
    } catch (e) {
      throw s3Error(e, "list", prefix);
    }
    // S3 orders by UTF-8 bytes; sort like the other backends (UTF-16 code units).
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(keys: readonly string[]): Promise<void> {
    const all = keys.map((k) => this.objectKey(k));
    for (let i = 0; i < all.length; i += DELETE_BATCH) {
      const batch = all.slice(i, i + DELETE_BATCH);
      let res: DeleteObjectsCommandOutput;
      try {
        res = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.config.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        );
      } catch (e) {
        throw s3Error(e, "delete", keys[i]!);
      }
      // Quiet mode reports only failures; a missing key is a success in S3.
      const failed = res.Errors?.[0];
      if (failed) {
        const key = (failed.Key ?? "").slice(this.config.prefix.length);
        const cause = Object.assign(new Error(failed.Message ?? failed.Code ?? "delete failed"), {
          name: failed.Code ?? "Unknown",
        });
        throw s3Error(cause, "delete", key);
      }
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

const AUTH_CODES = new Set([
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "AccessDenied",
  "AllAccessDisabled",
  "AccountProblem",
  "ExpiredToken",
  "InvalidToken",
  "TokenRefreshRequired",
  "CredentialsProviderError",
]);
const NOT_FOUND_CODES = new Set(["NoSuchKey", "NotFound"]);
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EPROTO",
  "ERR_STREAM_PREMATURE_CLOSE",
  "TimeoutError",
  "RequestTimeout",
  "SlowDown",
  "ServiceUnavailable",
  "InternalError",
]);

interface SdkErrorShape {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  errors?: { code?: string }[];
}

/**
 * Maps an AWS SDK (or socket) error to the object-store codes, keeping it as `cause`:
 * 401/403 and credential codes → OBJECT_STORE_AUTH, 404 → CHECKPOINT_NOT_FOUND (NoSuchBucket →
 * INVALID_ARGUMENT: the URL is wrong), connection failures, timeouts and 5xx → OBJECT_STORE_UNAVAILABLE.
 * Anything else is returned unchanged.
 */
export const s3Error = (e: unknown, op: string, key: string): unknown => {
  if (e instanceof FleetlinkError || typeof e !== "object" || e === null) return e;
  const err = e as SdkErrorShape;
  const name = err.name ?? "";
  const code = err.code ?? err.errors?.[0]?.code ?? "";
  const status = err.$metadata?.httpStatusCode;
  const what = `${op} ${JSON.stringify(key)}: ${name === "Error" || name === "" ? code : name}: ${err.message ?? ""}`;
  if (name === "NoSuchBucket")
    return new FleetlinkError("INVALID_ARGUMENT", `url: the bucket does not exist (${what})`, {
      field: "url",
      cause: e,
    });
  if (name === "PermanentRedirect" || status === 301)
    return new FleetlinkError("INVALID_ARGUMENT", `region: the bucket lives in another region (${what})`, {
      field: "region",
      cause: e,
    });
  if (AUTH_CODES.has(name) || status === 401 || status === 403)
    return new FleetlinkError("OBJECT_STORE_AUTH", `object store refused the credentials: ${what}`, {
      cause: e,
    });
  if (NOT_FOUND_CODES.has(name) || status === 404)
    return new FleetlinkError("CHECKPOINT_NOT_FOUND", `no object ${JSON.stringify(key)}`, { cause: e });
  if (NETWORK_CODES.has(name) || NETWORK_CODES.has(code) || (status !== undefined && status >= 500))
    return new FleetlinkError("OBJECT_STORE_UNAVAILABLE", `object store unavailable: ${what}`, { cause: e });
  return e;
};
