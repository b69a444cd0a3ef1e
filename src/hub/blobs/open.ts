// The one module that knows every blob storage backend. The URL is checked at once (a hub with a bad
// --blobs fails at start); the S3 backend and the AWS SDK load on first use, as checkpoint/open.ts does.
import type { Hash } from "node:crypto";
import type { Readable } from "node:stream";
import { loadS3Backend } from "../../checkpoint/open.ts";
import { resolveS3Config } from "../../checkpoint/s3-config.ts";
import { invalid } from "../../protocol/errors.ts";
import type { BlobUpload } from "../../store/types.ts";
import { FileBlobStorage } from "./file-storage.ts";
import type { BlobStorage, UploadWriter } from "./storage.ts";

/** Opens `file://DIR` (absolute or `file://./relative`) or `s3://BUCKET/PREFIX[?endpoint=…&region=…]`. */
export const openBlobStorage = (url: string): BlobStorage => {
  if (url.startsWith("file://")) return FileBlobStorage.open(url);
  if (url.startsWith("s3://")) return new LazyS3BlobStorage(url);
  throw invalid("blobStore", `must start with file:// or s3://, not ${JSON.stringify(url.split(":")[0])}`);
};

class LazyS3BlobStorage implements BlobStorage {
  readonly canPresign = true;
  readonly url: string;
  private backend: Promise<BlobStorage> | undefined;

  constructor(url: string) {
    this.url = url;
    resolveS3Config(url); // checks the URL now
  }

  private s(): Promise<BlobStorage> {
    this.backend ??= (async () => {
      await loadS3Backend(); // names the packages to install when the SDK is missing
      const { S3BlobStorage } = await import("./s3-storage.ts");
      return S3BlobStorage.open(this.url);
    })();
    return this.backend;
  }

  async openWriter(upload: BlobUpload, hash: Hash | null): Promise<UploadWriter & { hash(): Hash | null }> {
    return (await this.s()).openWriter(upload, hash);
  }
  async finish(upload: BlobUpload, expectSha256?: string): Promise<boolean> {
    return (await this.s()).finish(upload, expectSha256);
  }
  async abort(upload: BlobUpload): Promise<void> {
    return (await this.s()).abort(upload);
  }
  async has(objectKey: string): Promise<boolean> {
    return (await this.s()).has(objectKey);
  }
  async read(objectKey: string, start?: number, end?: number): Promise<Readable> {
    return (await this.s()).read(objectKey, start, end);
  }
  async delete(objectKeys: readonly string[]): Promise<void> {
    return (await this.s()).delete(objectKeys);
  }
  async presign(objectKey: string, expiresInS: number): Promise<string> {
    return (await this.s()).presign(objectKey, expiresInS);
  }
  async sweepOrphans(known: (id: string) => Promise<boolean>, olderThanMs: number): Promise<number> {
    return (await this.s()).sweepOrphans(known, olderThanMs);
  }
  async close(): Promise<void> {
    if (this.backend) await (await this.backend.catch(() => undefined))?.close();
  }
}
