import { randomBytes } from "node:crypto";
import { constants, type Dirent } from "node:fs";
import { type FileHandle, lstat, mkdir, open, readdir, rename, rmdir, unlink } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { FleetlinkError, invalid } from "../protocol/errors.ts";
import {
  checkKey,
  checkPrefix,
  hashingTap,
  type ObjectInfo,
  type ObjectStore,
  type PutResult,
  readAll,
  toReadable,
} from "./object-store.ts";

/**
 * In-flight writes are named `.NAME.RANDOM.fleetlink-partial`; list skips them, keys may not end so, and
 * garbage collection removes those a killed writer left (removeStalePartials).
 */
const PARTIAL = ".fleetlink-partial";
/** Opening the last component never follows a link (0 where the platform has no such flag). */
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;

/**
 * Objects as files under one directory. A put writes a temp file beside its target, fsyncs it and
 * renames it into place (then fsyncs the directory), so a reader sees the old object or the new one,
 * never part of one, even across a crash.
 *
 * Symbolic links below the root are never followed: a key whose path passes through one (a directory or
 * the object itself) is refused by put, get, head and delete, and list neither reports nor enters them, so
 * garbage collection cannot delete, and a reader cannot see, anything outside the root. The root itself may
 * be a link (the operator chose it). Each component is checked with lstat before the operation, and the
 * last one is opened with O_NOFOLLOW; a link swapped in by someone racing the store with write access to
 * its directory is out of scope (Node offers no openat).
 */
export class FileStore implements ObjectStore {
  readonly url: string;
  /** Absolute path of the store's root directory. */
  readonly root: string;

  constructor(url: string, root: string) {
    this.url = url;
    this.root = root;
  }

  /** `file:///abs/dir`, `file://localhost/abs/dir`, or `file://./rel/dir` / `file://../rel` (from the working directory). */
  static open(url: string): FileStore {
    const rest = url.slice("file://".length);
    if (rest.includes("?") || rest.includes("#"))
      throw invalid("url", "a file:// URL takes no query or fragment");
    if (rest === "" || rest === "/" || rest === "localhost/")
      throw invalid("url", "file:// needs a directory, e.g. file:///data/ckpt");
    const relative = /^\.\.?(\/|$)/.test(rest);
    if (!relative && !rest.startsWith("/") && !rest.startsWith("localhost/"))
      throw invalid(
        "url",
        "use file:///absolute/dir or file://./relative/dir (a file URL names no other host)",
      );
    try {
      return new FileStore(url, relative ? resolve(decodeURIComponent(rest)) : fileURLToPath(url));
    } catch (e) {
      throw new FleetlinkError("INVALID_ARGUMENT", `url: ${(e as Error).message}`, {
        field: "url",
        cause: e,
      });
    }
  }

  private path(key: string): string {
    checkKey(key);
    if (key.split("/").some((seg) => seg.endsWith(PARTIAL)))
      throw invalid("key", `segments ending in ${PARTIAL} are reserved: ${JSON.stringify(key)}`);
    return join(this.root, ...key.split("/"));
  }

  /**
   * The first of the first `depth` components of `key` (all by default) that is a symbolic link, as a
   * relative path; null if none is. Stops at the first missing component or file: nothing below it exists.
   */
  private async linkIn(key: string, depth?: number): Promise<string | null> {
    const segs = key.split("/").slice(0, depth);
    for (let n = 1; n <= segs.length; n++) {
      const rel = segs.slice(0, n).join("/");
      let st: Awaited<ReturnType<typeof lstat>>;
      try {
        st = await lstat(join(this.root, ...segs.slice(0, n)));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ENOTDIR") return null;
        throw fsError(e, key);
      }
      if (st.isSymbolicLink()) return rel;
      if (!st.isDirectory()) return null;
    }
    return null;
  }

  /** Throws INVALID_ARGUMENT (field `key`) if the key's path passes through a symbolic link. */
  private async refuseLinks(key: string, depth?: number): Promise<void> {
    const link = await this.linkIn(key, depth);
    if (link !== null)
      throw new FleetlinkError(
        "INVALID_ARGUMENT",
        `key: ${JSON.stringify(key)} passes through the symbolic link ${JSON.stringify(link)}; the file store never follows links out of ${this.root}`,
        { field: "key" },
      );
  }

  async put(key: string, body: Readable | Uint8Array): Promise<PutResult> {
    const path = this.path(key);
    const dir = dirname(path);
    const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}${PARTIAL}`);
    const tap = hashingTap();
    const parents = key.split("/").length - 1;
    try {
      // Before mkdir (which follows links) and again after it, before anything is opened.
      await this.refuseLinks(key);
      const { fh, created } = await openCreating(dir, tmp, () => this.refuseLinks(key, parents));
      // The stream owns fh from here: `flush` fsyncs it before the stream closes it (also on error).
      await pipeline(toReadable(body), tap, fh.createWriteStream({ flush: true }));
      await rename(tmp, path);
      // Persist the new entry, and those of any directories mkdir made for it.
      for (let d = dir; ; d = dirname(d)) {
        await fsyncDir(d);
        if (created === undefined || d === dirname(created) || d === dirname(d)) break;
      }
      return tap.result();
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw putError(e, key);
    }
  }

  async get(key: string): Promise<Readable> {
    const path = this.path(key);
    await this.refuseLinks(key);
    const fh = await open(path, constants.O_RDONLY | NOFOLLOW).catch(async (e: unknown) => {
      if ((e as NodeJS.ErrnoException).code === "ELOOP") await this.refuseLinks(key); // linked since
      throw fsError(e, key);
    });
    try {
      if (!(await fh.stat()).isFile()) throw notFound(key);
    } catch (e) {
      await fh.close();
      throw fsError(e, key);
    }
    return fh.createReadStream();
  }

  async getBytes(key: string): Promise<Uint8Array> {
    return readAll(await this.get(key));
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const path = this.path(key);
    await this.refuseLinks(key);
    try {
      const st = await lstat(path);
      return st.isFile() ? { key, size: st.size } : null;
    } catch (e) {
      const err = fsError(e, key);
      if (err instanceof FleetlinkError && err.kind === "CHECKPOINT_NOT_FOUND") return null;
      throw err;
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    await this.walk(prefix, async (key, name) => {
      if (name.endsWith(PARTIAL)) return;
      const st = await lstat(join(this.root, ...key.split("/"))).catch(() => null);
      if (st?.isFile()) out.push({ key, size: st.size });
    });
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /**
   * A put's temp file stays behind when its process is killed (or its body stalls forever). One not written
   * to since `stale` (a time) belongs to no live put: a put streaming its body keeps the file's mtime current,
   * and the checkpoint it belongs to timed out long ago. With a function, the caller judges each by its path
   * (`run/id/host0/.state.RANDOM.fleetlink-partial`) and mtime. Links are neither followed nor removed.
   */
  async removeStalePartials(
    prefix: string,
    stale: number | ((path: string, mtimeMs: number) => boolean),
  ): Promise<number> {
    const goes = typeof stale === "number" ? (_: string, mtimeMs: number) => mtimeMs < stale : stale;
    let n = 0;
    await this.walk(prefix, async (key, name) => {
      if (!name.endsWith(PARTIAL)) return;
      const path = join(this.root, ...key.split("/"));
      const st = await lstat(path).catch(() => null);
      if (!st?.isFile() || !goes(key, st.mtimeMs)) return;
      try {
        await unlink(path);
        n++;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw fsError(e, key);
        return; // its put finished (renamed it) or another collector was first
      }
      await this.pruneEmptyDirs(dirname(path));
    });
    return n;
  }

  /**
   * Calls `visit` for every regular file (partial or not) whose key starts with prefix, walking only the
   * deepest directory the prefix names in full ("a/b/c" → a/b) and never entering a symbolic link.
   */
  private async walk(prefix: string, visit: (key: string, name: string) => Promise<void>): Promise<void> {
    checkPrefix(prefix);
    const cut = prefix.lastIndexOf("/");
    const base = cut < 0 ? "" : prefix.slice(0, cut);
    // A link is not an object: list("") would skip it, so a prefix inside one lists nothing.
    if (base !== "" && (await this.linkIn(base)) !== null) return;
    const walk = async (rel: string): Promise<void> => {
      let entries: Dirent[];
      try {
        entries = await readdir(rel === "" ? this.root : join(this.root, ...rel.split("/")), {
          withFileTypes: true,
        });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ENOTDIR") return;
        throw fsError(e, rel);
      }
      for (const ent of entries) {
        const key = rel === "" ? ent.name : `${rel}/${ent.name}`;
        if (!key.startsWith(prefix) && !prefix.startsWith(`${key}/`)) continue;
        // Dirent types come from lstat: a link is neither a directory nor a file here, so it is skipped.
        if (ent.isDirectory()) await walk(key);
        else if (ent.isFile() && key.startsWith(prefix)) await visit(key, ent.name);
      }
    };
    await walk(base);
  }

  async delete(keys: readonly string[]): Promise<void> {
    const paths = keys.map((k) => this.path(k));
    // Every key is checked before any is deleted, like a bad key: one link refuses the whole batch.
    for (const k of keys) await this.refuseLinks(k);
    for (const [i, path] of paths.entries()) {
      try {
        await unlink(path);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ENOTDIR") continue;
        throw fsError(e, keys[i]!);
      }
      await this.pruneEmptyDirs(dirname(path));
    }
  }

  async close(): Promise<void> {}

  /** Removes now-empty directories up to (not including) the root, so deleted checkpoints leave no trees. */
  private async pruneEmptyDirs(dir: string): Promise<void> {
    while (dir.startsWith(this.root + sep)) {
      try {
        await rmdir(dir);
      } catch {
        return; // not empty (or already gone): stop
      }
      dir = dirname(dir);
    }
  }
}

/**
 * Creates dir and opens tmp in it (exclusively, never through a link); retries when a concurrent delete
 * prunes the empty dir in between. `check` runs after mkdir, before the open. `created` is the topmost
 * directory it had to make.
 */
const openCreating = async (
  dir: string,
  tmp: string,
  check: () => Promise<void>,
): Promise<{ fh: FileHandle; created?: string }> => {
  let created: string | undefined;
  for (let attempt = 0; ; attempt++) {
    const made = await mkdir(dir, { recursive: true });
    if (made !== undefined && (created === undefined || made.length < created.length)) created = made;
    await check();
    try {
      const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | NOFOLLOW;
      return { fh: await open(tmp, flags, 0o666), created };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT" || attempt >= 3) throw e;
    }
  }
};

const fsyncDir = async (dir: string): Promise<void> => {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
};

const notFound = (key: string): FleetlinkError =>
  new FleetlinkError("CHECKPOINT_NOT_FOUND", `no object ${JSON.stringify(key)}`);

/** A put whose path runs into an object where a directory must be, or the reverse. */
const putError = (e: unknown, key: string): unknown => {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "ENOTDIR" || code === "EEXIST" || code === "EISDIR")
    return new FleetlinkError(
      "INVALID_ARGUMENT",
      `key: ${JSON.stringify(key)} collides with an existing object or directory of that name`,
      { field: "key", cause: e },
    );
  return fsError(e, key);
};

/** Maps a filesystem error to the object-store error codes; others pass through unchanged. */
export const fsError = (e: unknown, key: string): unknown => {
  if (e instanceof FleetlinkError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case "ENOENT":
    case "ENOTDIR":
    case "EISDIR":
      return new FleetlinkError("CHECKPOINT_NOT_FOUND", `no object ${JSON.stringify(key)}`, { cause: e });
    case "EACCES":
    case "EPERM":
      return new FleetlinkError("OBJECT_STORE_AUTH", `permission denied on ${JSON.stringify(key)}`, {
        cause: e,
      });
    case "EIO":
    case "ENOSPC":
    case "EDQUOT":
    case "EROFS":
    case "EMFILE":
    case "ENFILE":
    case "ESTALE":
    case "ETIMEDOUT":
      return new FleetlinkError("OBJECT_STORE_UNAVAILABLE", `${code} on ${JSON.stringify(key)}`, {
        cause: e,
      });
    default:
      return e;
  }
};
