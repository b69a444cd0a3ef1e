import type { Row } from "./rows.ts";
import type { Change, ResolvedStoreOptions } from "./store.ts";

/** One connection (or transaction) that runs `$1`-style parameterised SQL. */
export interface SqlConn {
  /**
   * `name` names a statement whose text never changes and that runs on every call: PostgreSQL then parses and
   * plans it once per connection (a CTE's planning cost more than its execution); SQLite caches every statement.
   */
  q(sql: string, params?: readonly unknown[], name?: string): Promise<Row[]>;
  /**
   * The store's time for this write transaction, read once at its start: the injected clock, or the host's
   * (SQLite), or the database's (PostgreSQL without an injected clock, so replicas on skewed hosts agree).
   * Reads make no time decisions and have none.
   */
  readonly now: number;
}

/** A connection for reads, which make no time decisions: asking one for the time is a bug. */
export const readConn = (q: SqlConn["q"]): SqlConn => ({
  q,
  get now(): number {
    throw new Error("a read transaction has no store time");
  },
});

/**
 * What differs between the SQL of SQLite and PostgreSQL, as data: an operation reads these, and a difference
 * that is more than a clause is a visible `d.name === "sqlite" ? … : …` branch inside the operation.
 */
export interface Dialect {
  readonly name: "sqlite" | "postgres";
  /** A SQL expression usable as `x IN <expr>` for a list of ids bound at parameter `p` with `listParam`. */
  list(p: string): string;
  listParam(ids: readonly string[]): unknown;
  /**
   * Row-lock suffix for rows about to be changed by a sweep or cleanup, given the table alias: PostgreSQL locks
   * them and skips rows another replica holds (so sweeps never wait on each other or deadlock); SQLite's write
   * lock already covers the whole transaction.
   */
  skipLocked(alias?: string): string;
  /** Row-lock suffix that keeps a read row from changing until commit. */
  readonly shareLock: string;
  /**
   * Row-lock suffix that keeps a read row from being deleted until commit, and lets it be updated meanwhile
   * (PostgreSQL: FOR KEY SHARE, the lock a foreign key check takes; SQLite: nothing).
   */
  readonly keyShareLock: string;
  /**
   * A statement that serialises, until commit, the write transactions that run it with the same key `$1`
   * (PostgreSQL: a transaction-scoped advisory lock per schema); null on SQLite, whose write lock already
   * serialises every write transaction.
   */
  readonly lockKey: string | null;
  /**
   * The store's time in SQL, given parameter `p` bound to `Db.auto`'s `nowParam` (for statements outside a
   * transaction): SQLite binds the host's time; PostgreSQL the injected clock's, or null for the database's.
   */
  now(p: string): string;
  /** A FROM item `u` with rows (id, sid, iv, age) of the JSON array of renewals bound to parameter `p`. */
  renewalRows(p: string): string;
}

export const sqliteDialect: Dialect = {
  name: "sqlite",
  list: (p) => `(SELECT value FROM json_each(${p}))`,
  listParam: (ids) => JSON.stringify(ids),
  skipLocked: () => "",
  shareLock: "",
  keyShareLock: "",
  lockKey: null,
  now: (p) => p,
  renewalRows: (p) => `(SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.sid') AS sid,
      json_extract(value, '$.iv') AS iv, json_extract(value, '$.age') AS age FROM json_each(${p})) AS u`,
};

/**
 * The database's time in ms. statement_timestamp() is fixed for the whole statement, so every use in one
 * statement agrees; it is the database host's clock, the one every replica shares.
 */
export const PG_DB_NOW = "floor(extract(epoch from statement_timestamp()) * 1000)::bigint";

export const postgresDialect: Dialect = {
  name: "postgres",
  list: (p) => `(SELECT unnest(${p}::text[]))`,
  listParam: (ids) => ids,
  skipLocked: (alias) => (alias ? `FOR UPDATE OF ${alias} SKIP LOCKED` : "FOR UPDATE SKIP LOCKED"),
  shareLock: "FOR SHARE",
  keyShareLock: "FOR KEY SHARE",
  // search_path is the store's schema, so stores in two schemas of one database do not lock each other out.
  lockKey: "SELECT pg_advisory_xact_lock(hashtext('fleetlink:' || current_schema()), hashtext($1))",
  now: (p) => `COALESCE(${p}::bigint, ${PG_DB_NOW})`,
  renewalRows: (p) => `json_to_recordset(${p}::json) AS u(id text, sid text, iv bigint, age bigint)`,
};

/** What an operation is handed: one backend's connection layer, its dialect and the store's options. */
export interface Db {
  readonly d: Dialect;
  readonly options: ResolvedStoreOptions;
  /** Runs fn in a transaction ("write": no other replica can interleave with it on the rows it touches). */
  tx<T>(fn: (c: SqlConn) => Promise<T>, mode?: "read" | "write"): Promise<T>;
  /**
   * Runs fn's one statement outside any transaction, as its own (SQLite: in this connection's turn, and fn is
   * run again while another process holds the lock; PostgreSQL: on the pool). `nowParam` is what to bind for
   * `d.now(p)`.
   */
  auto<T>(fn: (q: SqlConn["q"], nowParam: number | null) => Promise<T>): Promise<T>;
  /**
   * Tells this handle's watchers now, and other replicas after the commit, that something changed. `others`
   * false: nothing in the change is for another replica to act on (instructions already leased to a stream here,
   * replies already claimed for a stream here), so PostgreSQL sends no NOTIFY: one statement and a wake-up of
   * every replica saved per call. A `Change` says what the NOTIFY concerns (see Change). SQLite replicas see every
   * commit regardless. (Default: true)
   */
  changed(others?: boolean | Change): void;
}
