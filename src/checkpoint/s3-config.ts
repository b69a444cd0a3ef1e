// An s3:// URL read into settings, without the AWS SDK: opening a store validates its URL at once, while the
// SDK itself is loaded only on the store's first operation (open.ts).
import { FleetlinkError, invalid } from "../protocol/errors.ts";
import { checkKey, type S3Options } from "./object-store.ts";

const MiB = 1024 * 1024;
/** S3's smallest part (all but the last). An object can have at most 10,000 parts. */
const MIN_PART = 5 * MiB;
const DEFAULT_PART = 8 * MiB;

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
