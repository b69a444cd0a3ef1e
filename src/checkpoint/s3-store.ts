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
import { FleetlinkError, invalid } from "../protocol/errors.ts";
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

const MiB = 1024 * 1024;
/** S3's smallest part (all but the last). An object can have at most 10,000 parts. */
const MIN_PART = 5 * MiB;
const DEFAULT_PART = 8 * MiB;
/** In-memory bodies up to this size are sent in one PutObject. */
const SINGLE_PUT_MAX = 256 * MiB;
/** DeleteObjects takes at most this many keys. */
const DELETE_BATCH = 1000;

/** Everything an S3Store needs, resolved from options, URL query and environment (in that order). */
export interface S3Config {
  bucket: string;
  /** "" or ends with "/". */
  prefix: string;
  endpoint: string | undefined;
  region: string;
  forcePathStyle: boolean;
  /** undefined: the AWS SDK's default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles, instance roles). */
  credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
  partSizeBytes: number;
}

const QUERY_PARAMS = new Set(["endpoint", "region", "forcePathStyle", "partSizeBytes"]);

/**
 * Parses `s3://BUCKET[/PREFIX][?endpoint=…&region=…&forcePathStyle=true&partSizeBytes=…]`.
 * Credentials are never read from the URL (it ends up in logs and status output).
 */
export const resolveS3Config = (
  url: string,
  opts: S3Options = {},
  env: NodeJS.ProcessEnv = process.env,
): S3Config => {
  if (!url.startsWith("s3://")) throw invalid("url", "an S3 store URL starts with s3://");
  if (url.includes("#")) throw invalid("url", "an s3:// URL takes no fragment");
  const [path = "", query = ""] = url.slice("s3://".length).split("?", 2) as [string, string?];
  const slash = path.indexOf("/");
  const bucket = slash < 0 ? path : path.slice(0, slash);
  if (bucket.includes("@") || bucket.includes(":"))
    throw invalid("url", "credentials are never read from the URL: pass them as options or AWS_* variables");
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(bucket))
    throw invalid("url", `s3:// needs a bucket name, e.g. s3://my-bucket/checkpoints`);
  let prefix: string;
  try {
    prefix = decodeURIComponent(slash < 0 ? "" : path.slice(slash + 1));
  } catch (e) {
    throw new FleetlinkError("INVALID_ARGUMENT", "url: malformed percent-encoding in the prefix", {
      field: "url",
      cause: e,
    });
  }
  if (prefix !== "") {
    if (!prefix.endsWith("/")) prefix += "/";
    checkKey(prefix.slice(0, -1), "url");
  }

  const q = new URLSearchParams(query);
  for (const name of q.keys()) {
    if (/key|secret|token|password|credential/i.test(name))
      throw invalid("url", `credentials are never read from the URL (found ${name}=…)`);
    if (!QUERY_PARAMS.has(name))
      throw invalid("url", `unknown parameter ${name}; known: ${[...QUERY_PARAMS].join(", ")}`);
  }

  const endpoint = opts.endpoint ?? q.get("endpoint") ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  if (endpoint !== undefined && !/^https?:\/\/[^/]/.test(endpoint))
    throw invalid("endpoint", `must be an http(s) URL, got ${JSON.stringify(endpoint)}`);
  const region = opts.region ?? q.get("region") ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? "us-east-1";
  const forcePathStyle = opts.forcePathStyle ?? parseBool(q.get("forcePathStyle")) ?? endpoint !== undefined;

  const qPart = q.get("partSizeBytes");
  const partSizeBytes = opts.partSizeBytes ?? (qPart === null ? DEFAULT_PART : Number(qPart));
  if (!Number.isSafeInteger(partSizeBytes) || partSizeBytes < MIN_PART)
    throw invalid("partSizeBytes", `must be an integer of at least ${MIN_PART} (5 MiB)`);

  if ((opts.accessKeyId === undefined) !== (opts.secretAccessKey === undefined))
    throw invalid("accessKeyId", "accessKeyId and secretAccessKey go together");
  const credentials =
    opts.accessKeyId !== undefined && opts.secretAccessKey !== undefined
      ? { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey }
      : undefined;

  return { bucket, prefix, endpoint, region, forcePathStyle, credentials, partSizeBytes };
};

const parseBool = (v: string | null): boolean | undefined => {
  if (v === null) return undefined;
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw invalid("url", `forcePathStyle must be true or false, got ${JSON.stringify(v)}`);
};

/** Objects in an S3 bucket (or any S3-compatible server) under a key prefix. */
export class S3Store implements ObjectStore {
  readonly url: string;
  readonly config: S3Config;
  private readonly client: S3Client;

  constructor(url: string, config: S3Config) {
    this.url = url;
    this.config = config;
    this.client = new S3Client({
      region: config.region,
      ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
      forcePathStyle: config.forcePathStyle,
      ...(config.credentials === undefined ? {} : { credentials: config.credentials }),
      // The SDK's newer default (CRC checksums, aws-chunked bodies) is not understood by every
      // S3-compatible server; we hash every object ourselves, and the checkpoint manifest checks it.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      // Without a connect timeout a black-holed endpoint hangs forever; the idle timeout catches a
      // server that stops answering mid-transfer.
      requestHandler: { connectionTimeout: 10_000, socketTimeout: 120_000 },
    });
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
