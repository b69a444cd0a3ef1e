// The one module that knows every object-store backend. The S3 backend (and with it the AWS SDK, ~500
// modules, an optional peer dependency) is imported on a store's first operation, so a process that never
// touches s3:// never loads it, and one without the SDK installed still opens file:// stores.
import type { Readable } from "node:stream";
import { FleetlinkError, invalid } from "../protocol/errors.ts";
import { FileStore } from "./file-store.ts";
import type { ObjectInfo, ObjectStore, PutResult, S3Options } from "./object-store.ts";
import { resolveS3Config, type S3Config } from "./s3-config.ts";

/** The packages the S3 backend needs; named by the error when one is missing. */
export const S3_PACKAGES = ["@aws-sdk/client-s3", "@aws-sdk/lib-storage"] as const;

/**
 * Opens `file://DIR` (absolute `file:///data/ck` or relative `file://./ck`) or `s3://BUCKET/PREFIX`. The URL
 * and options are checked here (INVALID_ARGUMENT on `url`); an s3:// store loads the AWS SDK on its first
 * operation, which rejects with UNSUPPORTED_STORE naming the packages to install when they are missing.
 */
export const openObjectStore = (url: string, opts: S3Options = {}): ObjectStore => {
  if (url.startsWith("file://")) return FileStore.open(url);
  if (url.startsWith("s3://")) return new LazyS3Store(url, resolveS3Config(url, opts));
  throw invalid(
    "url",
    `object store URL must start with file:// or s3://, not ${JSON.stringify(url.split(":")[0])}`,
  );
};

/** Loads the S3 backend; a missing SDK package becomes an error that says what to install. */
export const loadS3Backend = async (
  load: () => Promise<typeof import("./s3-store.ts")> = () => import("./s3-store.ts"),
): Promise<typeof import("./s3-store.ts")> => {
  try {
    return await load();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err?.code === "ERR_MODULE_NOT_FOUND" && S3_PACKAGES.some((p) => err.message?.includes(p)))
      throw new FleetlinkError(
        "UNSUPPORTED_STORE",
        `s3:// object stores need the optional packages ${S3_PACKAGES.join(" and ")}, which are not ` +
          `installed: npm install ${S3_PACKAGES.join(" ")}`,
        { cause: e },
      );
    throw e;
  }
};

/** An s3:// store whose backend is loaded on first use; every operation waits for it. */
class LazyS3Store implements ObjectStore {
  readonly url: string;
  private readonly config: S3Config;
  private backend: Promise<ObjectStore> | undefined;

  constructor(url: string, config: S3Config) {
    this.url = url;
    this.config = config;
  }

  private store(): Promise<ObjectStore> {
    this.backend ??= loadS3Backend().then(({ S3Store }) => new S3Store(this.url, this.config));
    return this.backend;
  }

  async put(key: string, body: Readable | Uint8Array): Promise<PutResult> {
    return (await this.store()).put(key, body);
  }
  async get(key: string): Promise<Readable> {
    return (await this.store()).get(key);
  }
  async getBytes(key: string): Promise<Uint8Array> {
    return (await this.store()).getBytes(key);
  }
  async head(key: string): Promise<ObjectInfo | null> {
    return (await this.store()).head(key);
  }
  async list(prefix: string): Promise<ObjectInfo[]> {
    return (await this.store()).list(prefix);
  }
  async delete(keys: readonly string[]): Promise<void> {
    return (await this.store()).delete(keys);
  }
  async close(): Promise<void> {
    // Never used: nothing was loaded, nothing to close (and no reason to load the SDK now).
    if (!this.backend) return;
    await (await this.backend.catch(() => undefined))?.close();
  }
}
