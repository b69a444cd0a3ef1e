import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, statSync } from "node:fs";
import { mkdtemp, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { FleetlinkError } from "../protocol/errors.ts";
import { newId } from "../protocol/ids.ts";
import type { SqliteStore } from "../store/sqlite.ts";
import {
  checkPart,
  collectGarbage,
  findCheckpoint,
  HUB_RUN,
  hostPrefix,
  type Manifest,
  manifestKey,
} from "./layout.ts";
import type { ObjectStore } from "./object-store.ts";

export { HUB_RUN } from "./layout.ts";
export type Progress = (done: number, total: number) => void;

/** Counts bytes flowing through, for progress bars. */
export const progressTap = (total: number, onProgress?: Progress): Transform => {
  let done = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      done += chunk.length;
      onProgress?.(done, total);
      cb(null, chunk);
    },
  });
};

/**
 * Pushes a consistent snapshot (online backup) of a SQLite hub database with the same rules as fleet
 * checkpoints: the part first, the manifest last, then retention.
 */
export const pushHubSnapshot = async (
  store: SqliteStore,
  objects: ObjectStore,
  opts: { keep?: number; onProgress?: Progress } = {},
): Promise<Manifest> => {
  const dir = await mkdtemp(join(tmpdir(), "fleetlink-hub-snap-"));
  try {
    const file = join(dir, "db.sqlite");
    await store.backupTo(file);
    const { size } = await stat(file);
    const id = newId();
    const key = `${hostPrefix(HUB_RUN, id, 0)}db.sqlite`;
    const tap = progressTap(size, opts.onProgress);
    const put = objects.put(key, createReadStream(file).pipe(tap));
    const res = await put;
    const manifest: Manifest = {
      id,
      runId: HUB_RUN,
      createdAt: Date.now(),
      nHosts: 1,
      hosts: [{ hostIdx: 0, nodeId: "hub", key, size: res.size, sha256: res.sha256 }],
    };
    await objects.put(manifestKey(HUB_RUN, id), new TextEncoder().encode(JSON.stringify(manifest, null, 2)));
    await collectGarbage(objects, HUB_RUN, opts.keep ?? 3);
    return manifest;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
};

const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;

/**
 * Throws CONFLICT if any connection, in any process, has the SQLite database at `dbPath` open: a file
 * replaced under a running hub is lost (the hub keeps reading and writing the old, now nameless, file).
 *
 * How: hubs open their database in WAL mode, and a WAL-mode connection holds a shared lock on the file (and
 * on its `-shm` index) for as long as it is open, busy or idle. A connection in exclusive locking mode needs
 * an exclusive lock for its first transaction; with no busy timeout it fails at once with SQLITE_BUSY while
 * any other connection is open, and otherwise gets it and drops it again on close. The locks are the OS's
 * (POSIX advisory locks), so this sees every process on the host, and a crashed hub holds none: its locks
 * went with it. Only a process that opened the database without SQLite's locking (or on a network file
 * system that drops them) is invisible. A file that is not a SQLite database is held by nobody.
 */
export const assertNotInUse = async (dbPath: string): Promise<void> => {
  if (!existsSync(dbPath)) return;
  // Loaded here, not at the top: importing this module must not need node:sqlite (see cli/main.ts).
  const { DatabaseSync } = await import("node:sqlite");
  let db: InstanceType<typeof DatabaseSync> | undefined;
  try {
    db = new DatabaseSync(dbPath, { timeout: 0 });
    db.exec("PRAGMA locking_mode = EXCLUSIVE");
    db.exec("BEGIN EXCLUSIVE");
    db.exec("ROLLBACK");
  } catch (e) {
    const code = ((e as { errcode?: number }).errcode ?? 0) & 0xff;
    if (code === SQLITE_BUSY || code === SQLITE_LOCKED)
      throw new FleetlinkError(
        "CONFLICT",
        `${dbPath} is open in another process (a running hub?): stop every hub using it, then restore. ` +
          "A database replaced under a running hub is lost: the hub keeps writing to the old, deleted file.",
        { cause: e },
      );
  } finally {
    db?.close();
  }
};

/**
 * Restores a hub database from a snapshot before serving. A local database modified after the snapshot was
 * taken wins (it is newer): it is kept, and the result says so (`force` replaces it anyway). A database any
 * process has open is never replaced, forced or not (CONFLICT, see assertNotInUse). The download is verified
 * (size + SHA-256) before it replaces anything.
 */
export const restoreHubSnapshot = async (
  objects: ObjectStore,
  dbPath: string,
  id = "latest",
  opts: { force?: boolean; onProgress?: Progress } = {},
): Promise<{ restored: boolean; id: string; reason: string }> => {
  const m = await findCheckpoint(objects, HUB_RUN, id, {
    list: `fleetlink checkpoint list --store ${objects.url}`,
    push: `fleetlink checkpoint push --db sqlite:PATH --store ${objects.url}`,
  });
  const part = checkPart(
    m.hosts.find((p) => p.hostIdx === 0),
    HUB_RUN,
    m.id,
    0,
  );
  if (!opts.force && existsSync(dbPath)) {
    const local = Math.max(
      statSync(dbPath).mtimeMs,
      existsSync(`${dbPath}-wal`) ? statSync(`${dbPath}-wal`).mtimeMs : 0,
    );
    if (local > m.createdAt)
      return {
        restored: false,
        id: m.id,
        reason: `local database ${dbPath} (modified ${new Date(local).toISOString()}) is newer than checkpoint ${m.id} (${new Date(m.createdAt).toISOString()}): keeping the local one`,
      };
  }
  // Before the download (fail fast) and again just before the file is replaced.
  await assertNotInUse(dbPath);
  const tmp = join(dirname(dbPath), `.${newId()}.restore`);
  try {
    const hash = createHash("sha256");
    let size = 0;
    await pipeline(
      await objects.get(part.key),
      progressTap(part.size, opts.onProgress),
      new Transform({
        transform(chunk: Buffer, _e, cb) {
          hash.update(chunk);
          size += chunk.length;
          cb(null, chunk);
        },
      }),
      createWriteStream(tmp),
    );
    if (size !== part.size || hash.digest("hex") !== part.sha256)
      throw new FleetlinkError("CHECKSUM_MISMATCH", `${part.key} does not match its manifest`);
    await assertNotInUse(dbPath);
    for (const f of [`${dbPath}-wal`, `${dbPath}-shm`]) await rm(f, { force: true });
    await rename(tmp, dbPath);
    return { restored: true, id: m.id, reason: `restored ${dbPath} from checkpoint ${m.id}` };
  } finally {
    await rm(tmp, { force: true });
  }
};
