import { closeSync, fchmodSync, openSync, realpathSync } from "node:fs";
import { backup, DatabaseSync, type SQLInputValue } from "node:sqlite";
import { FleetlinkError } from "../protocol/errors.ts";
import { Backoff, type BackoffPolicy } from "../util/backoff.ts";
import { readConn, type SqlConn, sqliteDialect } from "./dialect.ts";
import { sqliteMigrations } from "./migrations/sqlite.ts";
import type { Row } from "./rows.ts";
import { SqlStore } from "./sql.ts";
import { checkPositiveInt, resolveOptions, type StoreOptions } from "./store.ts";

export interface SqliteOptions extends StoreOptions {
  /**
   * How long an operation waits for another process's write lock before it fails with STORE_UNAVAILABLE, in ms.
   * The wait is asynchronous (retries with backoff), so the event loop keeps running meanwhile; only opening
   * the store (its migrations) waits synchronously. (Default: 5000)
   */
  busyTimeoutMs?: number;
  /** How often to look for other processes' commits while someone watches, in ms. (Default: 5) */
  watchIntervalMs?: number;
  /**
   * `normal` survives a process crash (WAL); `full` also survives power loss, at the cost of an fsync per commit.
   * (Default: "normal")
   */
  synchronous?: "normal" | "full";
}

/**
 * Creates a missing database file readable by its owner only (it holds credential hashes), before SQLite
 * would create it with the umask's mode. SQLite gives the -wal and -shm files the database file's mode.
 * An existing file keeps the mode its owner chose. Returns the key under which handles of this process share
 * one queue (see `queues`).
 */
const prepareFile = (path: string): string => {
  if (path === ":memory:" || path === "" || path.startsWith("file:")) return `${path}#${Math.random()}`;
  try {
    const fd = openSync(path, "wx", 0o600);
    try {
      fchmodSync(fd, 0o600);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  return realpathSync(path);
};

/**
 * One queue per database file for every handle of this process: a transaction body awaits, and a handle of this
 * same process waiting for the write lock its body holds would wait for nothing. So handles of one process take
 * turns here, and only other processes' locks are waited for (see `retryBusy`).
 */
const queues = new Map<string, { tail: Promise<unknown>; handles: number }>();

/**
 * How long SQLite's own busy handler waits, in ms. node:sqlite waits in it synchronously, freezing the event
 * loop, so it only rides out a lock held for a moment; longer waits are retried asynchronously.
 */
const SYNC_BUSY_MS = 5;
/** Longest pause between two tries for a locked database, in ms (the wait after the lock goes, at worst). */
const MAX_BUSY_PAUSE_MS = 50;
/** Pauses between tries for a locked database: 1 ms doubling to MAX_BUSY_PAUSE_MS, half of each random. */
const BUSY_BACKOFF: BackoffPolicy = { initialMs: 1, maxMs: MAX_BUSY_PAUSE_MS, jitter: 0.5 };

/** SQLITE_BUSY (and its extended codes): another connection holds a lock this one needs. */
const isBusy = (e: unknown): boolean => {
  const x = e as { errcode?: unknown; message?: unknown } | null;
  return (
    (typeof x?.errcode === "number" && (x.errcode & 0xff) === 5) ||
    (typeof x?.message === "string" && x.message.includes("database is locked"))
  );
};

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * SQLite backend over node:sqlite. Several OS processes may open the same file: WAL mode lets readers run
 * beside the one writer, and every write happens in a `BEGIN IMMEDIATE` transaction (or a single statement),
 * so it holds the database write lock from its first read to its commit.
 */
export class SqliteStore extends SqlStore {
  readonly backend = "sqlite" as const;
  private readonly db: DatabaseSync;
  private readonly cache = new Map<string, ReturnType<DatabaseSync["prepare"]>>();
  // node:sqlite is synchronous, but a transaction body awaits; the queue keeps two bodies from interleaving
  // on this one connection (and, shared per file, across this process's connections).
  private readonly queue: { tail: Promise<unknown>; handles: number };
  private readonly queueKey: string;
  private readonly q: SqlConn["q"];
  private readonly watchIntervalMs: number;
  private readonly busyTimeoutMs: number;
  /** A private database (`:memory:` or a temporary one): no other connection can open it. */
  private readonly private: boolean;

  constructor(path: string, opts: SqliteOptions = {}) {
    super(sqliteDialect, resolveOptions(opts));
    this.queueKey = prepareFile(path);
    this.private = path === ":memory:" || path === "";
    this.db = new DatabaseSync(path);
    const q = queues.get(this.queueKey) ?? { tail: Promise.resolve(), handles: 0 };
    q.handles++;
    queues.set(this.queueKey, q);
    this.queue = q;
    this.busyTimeoutMs =
      opts.busyTimeoutMs === undefined ? 5000 : checkPositiveInt("busyTimeoutMs", opts.busyTimeoutMs);
    // Opening waits for the lock synchronously (a constructor cannot await; nothing is served yet), then every
    // operation waits asynchronously.
    this.db.exec(`PRAGMA busy_timeout = ${this.busyTimeoutMs}`);
    this.db.exec("PRAGMA journal_mode = WAL");
    this.db.exec(`PRAGMA synchronous = ${opts.synchronous === "full" ? "FULL" : "NORMAL"}`);
    // Statement journals of multi-row writes stay in memory instead of spilling to a temp file.
    this.db.exec("PRAGMA temp_store = MEMORY");
    this.q = async (sql, params) => this.all(sql, params);
    this.watchIntervalMs = opts.watchIntervalMs ?? 5;
    this.migrate();
    this.db.exec(`PRAGMA busy_timeout = ${SYNC_BUSY_MS}`);
  }

  /**
   * Runs `attempt` until it does not find the database locked by another process: after a few ms in SQLite's
   * busy handler it fails, and is tried again after a pause (doubling up to MAX_BUSY_PAUSE_MS, with jitter so
   * that waiting processes do not retry in step) during which the event loop runs. An attempt that found the
   * database locked changed nothing (its statement or transaction was rolled back), so it is safe to repeat.
   * After busyTimeoutMs: STORE_UNAVAILABLE.
   */
  private async retryBusy<T>(attempt: () => Promise<T>): Promise<T> {
    const start = performance.now();
    const pauses = new Backoff(BUSY_BACKOFF);
    for (;;) {
      try {
        return await attempt();
      } catch (e) {
        if (!isBusy(e)) throw e;
        const waited = performance.now() - start;
        if (waited >= this.busyTimeoutMs)
          throw new FleetlinkError(
            "STORE_UNAVAILABLE",
            `SQLite: database is locked for ${Math.round(waited)} ms (busyTimeoutMs ${this.busyTimeoutMs})`,
            { cause: e },
          );
        await sleep(Math.min(pauses.next()!, this.busyTimeoutMs - waited));
      }
    }
  }

  private stmt(sql: string) {
    let s = this.cache.get(sql);
    if (!s) {
      if (this.cache.size > 1000) this.cache.clear();
      // The shared SQL uses PostgreSQL's $1 placeholders; SQLite's ?1 binds the same positional values.
      s = this.db.prepare(sql.replace(/\$(\d+)/g, "?$1"));
      this.cache.set(sql, s);
    }
    return s;
  }

  private all(sql: string, params: readonly unknown[] = []): Row[] {
    return this.stmt(sql).all(...(params as SQLInputValue[])) as Row[];
  }

  private migrate(): void {
    // EXCLUSIVE: a second process starting at the same moment waits, then sees the migrations applied.
    this.db.exec("BEGIN EXCLUSIVE");
    try {
      this.db.exec(
        "CREATE TABLE IF NOT EXISTS fleetlink_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at INTEGER)",
      );
      const row = this.db
        .prepare("SELECT coalesce(max(version), 0) AS v FROM fleetlink_migrations")
        .get() as {
        v: number;
      };
      for (const m of sqliteMigrations) {
        if (m.version <= row.v) continue;
        this.db.exec(m.sql);
        this.db
          .prepare("INSERT INTO fleetlink_migrations (version, name, applied_at) VALUES (?, ?, ?)")
          .run(m.version, m.name, Date.now());
      }
      this.db.exec("COMMIT");
    } catch (e) {
      this.db.exec("ROLLBACK");
      throw e;
    }
  }

  protected tx<T>(fn: (c: SqlConn) => Promise<T>, mode: "read" | "write" = "write"): Promise<T> {
    const once = async (): Promise<T> => {
      this.db.exec(mode === "write" ? "BEGIN IMMEDIATE" : "BEGIN");
      try {
        // The time is read once the write lock is held, not while waiting for it.
        const out = await fn(mode === "write" ? { q: this.q, now: this.time() } : readConn(this.q));
        this.db.exec("COMMIT");
        return out;
      } catch (e) {
        if (this.db.isTransaction) this.db.exec("ROLLBACK");
        throw e;
      }
    };
    // A write finds the database locked at BEGIN IMMEDIATE, before its body ran; the body runs again only after
    // a rollback (a read that met a lock), so it is never applied twice.
    return this.enqueue(() => this.retryBusy(once));
  }

  private enqueue<T>(run: () => Promise<T>): Promise<T> {
    const p = this.queue.tail.then(run, run);
    this.queue.tail = p.catch(() => {});
    return p;
  }

  /**
   * Runs autocommit statements on this connection, never inside another caller's open transaction; the time is
   * read when this connection's turn has come. A statement that found the database locked changed nothing, so
   * fn is run again (see retryBusy).
   */
  protected auto<T>(fn: (q: SqlConn["q"], nowParam: number | null) => Promise<T>): Promise<T> {
    return this.enqueue(() => this.retryBusy(() => fn(this.q, this.time())));
  }

  protected announce(): void {}

  /**
   * Other processes' commits are noticed through `PRAGMA data_version`, which changes only when another
   * connection commits. Reading it touches the shared WAL index, not the disk: about a microsecond, so a
   * 5 ms poll costs nothing measurable and wakes a replica within a few ms (see BENCHMARKS.md).
   */
  protected watchOthers(onChange: () => void): () => void {
    // A private in-memory database has no other connection whose commits could be missed.
    if (this.private) return () => {};
    const version = this.db.prepare("PRAGMA data_version");
    let last = (version.get() as { data_version: number }).data_version;
    const timer = setInterval(() => {
      if (!this.db.isOpen) return;
      const v = (version.get() as { data_version: number }).data_version;
      if (v !== last) {
        last = v;
        onChange();
      }
    }, this.watchIntervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /**
   * A consistent copy of the live database at `path` (SQLite's online backup: pages are copied in steps while
   * other processes keep writing; the copy is the state of one moment). A new file is made owner-only, too.
   */
  async backupTo(path: string, onProgress?: (done: number, total: number) => void): Promise<void> {
    prepareFile(path);
    await backup(this.db, path, {
      rate: 256,
      progress: onProgress
        ? ({ totalPages, remainingPages }) => onProgress(totalPages - remainingPages, totalPages)
        : undefined,
    });
  }

  async close(): Promise<void> {
    await this.enqueue(async () => {
      if (!this.db.isOpen) return;
      this.db.close();
      if (--this.queue.handles === 0) queues.delete(this.queueKey);
    });
  }
}
