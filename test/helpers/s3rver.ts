import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** A running s3rver: a real S3-compatible HTTP server on 127.0.0.1, its data in a temp dir. */
export interface S3rver {
  /** `http://127.0.0.1:PORT` */
  endpoint: string;
  region: string;
  bucket: string;
  /** The key pair s3rver knows. s3rver checks the key id but not SigV4 signatures. */
  accessKeyId: string;
  secretAccessKey: string;
  /** Closes the server, waits for its process to exit and removes its data dir. */
  stop: () => Promise<void>;
}

/*
 * s3rver runs in a child process, not in the test worker, because:
 * - it encrypts ListObjectsV2 continuation tokens with DES, which Node 24's OpenSSL 3 only offers
 *   through the legacy provider (`--openssl-legacy-provider`, a process-wide flag): without it any
 *   listing longer than 1000 keys fails with "error:0308010C:digital envelope routines::unsupported";
 * - the child exits when its stdin closes, and removes its data dir, so even a killed test run
 *   leaves no server and no files behind.
 *
 * And it gets two fixes, so that it keeps S3's guarantees that the stores rely on:
 * - s3rver 3.7.1 answers a PUT (object or part) when the bytes have entered its write stream, not
 *   when they are on disk, so an immediate GET or CompleteMultipartUpload can read a short file;
 * - it writes objects in place, so a concurrent reader or writer sees (or leaves) a mix, where S3
 *   replaces an object atomically. The fix writes a temp file (named so listings skip it), then renames.
 */
const CHILD = `
const [modPath, dir, bucket] = process.argv.slice(1);
const path = require("node:path"), fs = require("node:fs"), crypto = require("node:crypto");
const { Readable, Transform } = require("node:stream");
const { pipeline } = require("node:stream/promises");
const S3rver = require(modPath);
const Store = require(path.join(path.dirname(modPath), "stores", "filesystem.js"));
const writeHashed = async (content, dest) => {
  const md5 = crypto.createHash("md5");
  let size = 0;
  const tmp = dest + "." + crypto.randomBytes(6).toString("hex") + ".partial";
  await fs.promises.mkdir(path.dirname(dest), { recursive: true });
  try {
    await pipeline(Buffer.isBuffer(content) ? Readable.from([content]) : content,
      new Transform({ transform(c, _e, cb) { md5.update(c); size += c.length; cb(null, c); } }),
      fs.createWriteStream(tmp));
    await fs.promises.rename(tmp, dest);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
  return { size, md5: md5.digest("hex") };
};
Store.prototype.putObject = async function (object) {
  const r = await writeHashed(object.content, this.getResourcePath(object.bucket, object.key, "object"));
  await this.putMetadata(object.bucket, object.key, object.metadata, r.md5);
  return r;
};
Store.prototype.putPart = async function (bucket, uploadId, partNumber, content) {
  const partPath = path.join(this.getResourcePath(bucket, undefined, "uploads"), uploadId, String(partNumber));
  const r = await writeHashed(content, partPath);
  await fs.promises.writeFile(partPath + ".md5", r.md5);
  return r;
};
const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: dir,
  configureBuckets: [{ name: bucket }] });
server.run().then(
  (addr) => process.stdout.write(JSON.stringify({ port: addr.port }) + "\\n"),
  (err) => { console.error(err); process.exit(1); });
process.stdin.on("end", () =>
  server.close().finally(() => { fs.rmSync(dir, { recursive: true, force: true }); process.exit(0); }));
process.stdin.resume();
`;

/** Starts s3rver on 127.0.0.1 port 0 with one bucket; the caller must `stop()` it. */
export const startS3rver = async (bucket = "fleetlink-test"): Promise<S3rver> => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-s3rver-"));
  const modPath = createRequire(import.meta.url).resolve("s3rver");
  const child = spawn(process.execPath, ["--openssl-legacy-provider", "-e", CHILD, modPath, dir, bucket], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const lines = createInterface({ input: child.stdout });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s3rver did not start in 10 s: ${stderr}`)), 10_000);
    lines.once("line", (line) => {
      clearTimeout(timer);
      resolve((JSON.parse(line) as { port: number }).port);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited with ${code} before listening: ${stderr}`));
    });
  }).catch((e: unknown) => {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    throw e;
  });
  lines.close();

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      child.stdin.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
    })();
    return stopped;
  };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    region: "us-east-1",
    bucket,
    accessKeyId: "S3RVER",
    secretAccessKey: "S3RVER",
    stop,
  };
};
