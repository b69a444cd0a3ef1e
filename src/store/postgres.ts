import pg from "pg";
import { FleetlinkError, invalid, isFleetlinkError } from "../protocol/errors.ts";
import { newId } from "../protocol/ids.ts";
import { Backoff, type BackoffPolicy } from "../util/backoff.ts";
import { Coalesced } from "../util/coalesce.ts";
import { PG_DB_NOW as DB_NOW, postgresDialect, readConn, type SqlConn } from "./dialect.ts";
import { postgresMigrations } from "./migrations/postgres.ts";
import type { Row } from "./rows.ts";
import { SqlStore } from "./sql.ts";
import { type Change, checkPositiveInt, resolveOptions, type StoreOptions } from "./store.ts";

export interface PostgresOptions extends StoreOptions {
  /** Connections in the pool. (Default: 10) */
  poolSize?: number;
  /**
   * `application_name` of every connection of this store, its LISTEN connections included, as shown in
   * pg_stat_activity. An `application_name` in the URL takes precedence. (Default: "fleetlink")
   */
  applicationName?: string;
  /**
   * How long to wait for a new connection, or for a free one when the pool is full, before STORE_UNAVAILABLE,
   * in ms; never longer than queryTimeoutMs. (Default: 5000)
   */
  connectTimeoutMs?: number;
  /**
   * The server cancels a statement that runs longer (`statement_timeout`), in ms; below queryTimeoutMs, so that
   * a slow statement is cancelled by the server (its connection kept) before the client gives up on it.
   * (Default: 80% of queryTimeoutMs)
   */
  statementTimeoutMs?: number;
  /**
   * The server ends a session left idle inside a transaction this long (`idle_in_transaction_session_timeout`),
   * releasing its locks, in ms. (Default: 10000)
   */
  idleInTransactionTimeoutMs?: number;
  /**
   * The longest one store call may take, in ms: waiting for a pooled connection or connecting, then every
   * statement of it, COMMIT included. Past it the call fails STORE_UNAVAILABLE (503) and the connection it
   * held is destroyed, never returned to the pool (it may still be inside a transaction, or the database
   * unreachable: a cut link, a frozen server, which the server's own timeouts cannot catch).
   * `fleetlink serve --store-timeout`. (Default: 5000)
   */
  queryTimeoutMs?: number;
  /**
   * How often a LISTEN connection (see `watch`) sends itself a probe notification, in ms; one that does not
   * hear it back within the same time is ended and replaced, so a half-open connection is noticed.
   * (Default: 5000)
   */
  listenProbeMs?: number;
}

/** Migrations may build indexes on big tables: their statements get this long instead. */
const MIGRATION_TIMEOUT_MS = 10 * 60_000;
/** The bound of one store call when queryTimeoutMs is not given. */
const DEFAULT_CALL_TIMEOUT_MS = 5000;
/** Longest NOTIFY payload sent (PostgreSQL's limit is 8000 bytes). */
const PAYLOAD_MAX = 7000;

/** A payload's change, or undefined (anything) if it cannot be read: a newer replica may say more. */
const parseChange = (text: string): Change | undefined => {
  try {
    const v = JSON.parse(text) as { n?: unknown; r?: unknown };
    const ids = (a: unknown) => (Array.isArray(a) && a.every((x) => typeof x === "string") ? a : null);
    const nodes = ids(v.n);
    const runs = ids(v.r);
    return nodes && runs ? { nodes, runs } : undefined;
  } catch {
    return undefined;
  }
};

/** Notifications whose payload starts with this are LISTEN probes, not changes. */
const PROBE = "probe:";
/** Reconnects of a LISTEN connection: 100 ms doubling to 1 s, a quarter of each random (replicas that lost
 * their database together do not come back in step). */
const LISTEN_BACKOFF: BackoffPolicy = { initialMs: 100, maxMs: 1000, jitter: 0.25 };

const INT8 = 20;
const parseTypes = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** Error codes that mean the connection is gone or cannot be made, as opposed to a bug in a statement. */
const LOST_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "53300", // too_many_connections
  "57P01", // admin_shutdown (pg_terminate_backend, a fast shutdown)
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now (starting up, shutting down)
  "57P05", // idle_session_timeout
  "57014", // query_canceled: statement_timeout (the database did not answer in time)
  "25P03", // idle_in_transaction_session_timeout
]);
/** What pg says, with no code, when a connection dies under it or cannot be had. */
const LOST_MESSAGES =
  /Connection terminated|connection error and is not queryable|Client was closed and is not queryable|timeout exceeded when trying to connect|Query read timeout/;

/**
 * Maps a lost or unobtainable connection to STORE_UNAVAILABLE (indefinite: a write may have committed just
 * before the connection died); any other error is returned as it is.
 */
export const storeError = (e: unknown): unknown => {
  if (!(e instanceof Error)) return e;
  const code = (e as { code?: unknown }).code;
  const lost =
    (typeof code === "string" && (LOST_CODES.has(code) || code.startsWith("08"))) ||
    LOST_MESSAGES.test(e.message);
  return lost ? new FleetlinkError("STORE_UNAVAILABLE", `PostgreSQL: ${e.message}`, { cause: e }) : e;
};

/** One store call's time: it must be over by `deadline` (performance.now() ms), `boundMs` after it began. */
interface Call {
  deadline: number;
  boundMs: number;
}

const callOf = (boundMs: number): Call => ({ deadline: performance.now() + boundMs, boundMs });

const timedOut = (call: Call): FleetlinkError =>
  new FleetlinkError(
    "STORE_UNAVAILABLE",
    `PostgreSQL did not answer within ${call.boundMs} ms (the store timeout, queryTimeoutMs)`,
  );

/** The ms a call has left; STORE_UNAVAILABLE when none. */
const left = (call: Call): number => {
  const ms = Math.ceil(call.deadline - performance.now());
  if (ms <= 0) throw timedOut(call);
  return ms;
};

/** A pooled connection held by one call, listened to for errors while it is held. */
interface Held {
  client: pg.PoolClient;
  /** Back to the pool; with an error (or when the connection reported one), destroyed instead. */
  release(err?: Error): void;
  lost(): Error | undefined;
}

/**
 * PostgreSQL backend: replicas on many machines share one database. Writes run in READ COMMITTED
 * transactions; claims lock their rows with FOR UPDATE SKIP LOCKED so racing replicas neither wait on nor
 * take each other's rows. `?schema=NAME` in the URL puts every table in that schema (created if missing).
 */
export class PostgresStore extends SqlStore {
  readonly backend = "postgres" as const;
  private readonly pool: pg.Pool;
  /** Connection settings shared by the pool and the LISTEN connections. */
  private readonly clientConfig: pg.ClientConfig;
  private readonly listenProbeMs: number;
  readonly schema: string;

  private constructor(pool: pg.Pool, clientConfig: pg.ClientConfig, schema: string, opts: PostgresOptions) {
    super(postgresDialect, resolveOptions(opts));
    this.pool = pool;
    this.clientConfig = clientConfig;
    this.listenProbeMs =
      opts.listenProbeMs === undefined ? 5000 : checkPositiveInt("listenProbeMs", opts.listenProbeMs);
    this.schema = schema;
    this.callTimeoutMs = opts.queryTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.dbClock = opts.clock === undefined;
  }

  /** The bound of one store call (queryTimeoutMs). */
  private readonly callTimeoutMs: number;

  /** No clock was injected: every time the store judges by is the database's (see `DB_NOW`). */
  private readonly dbClock: boolean;

  /**
   * The value to bind for a time parameter that `Dialect.now` reads: the injected clock's time, or null for the
   * database's time.
   */
  private nowParam(): number | null {
    return this.dbClock ? null : this.time();
  }

  /** Statements outside a transaction run on the pool; they read the store's time through `Dialect.now`. */
  protected auto<T>(fn: (q: SqlConn["q"], nowParam: number | null) => Promise<T>): Promise<T> {
    const call = callOf(this.callTimeoutMs);
    return fn((sql, params, name) => this.pooled(call, sql, params, name), this.nowParam());
  }

  override async now(): Promise<number> {
    if (!this.dbClock) return this.time();
    const [r] = await this.pooled(callOf(this.callTimeoutMs), `SELECT ${DB_NOW} AS now`);
    return Number(r!.now);
  }

  static async open(url: string, opts: PostgresOptions = {}): Promise<PostgresStore> {
    const u = new URL(url);
    const schema = u.searchParams.get("schema") ?? "public";
    if (!/^[a-z_][a-z0-9_]{0,62}$/i.test(schema)) throw invalid("schema", "must be a plain SQL identifier");
    u.searchParams.delete("schema");
    const ms = (field: keyof PostgresOptions, fallback: number): number =>
      opts[field] === undefined ? fallback : checkPositiveInt(field, opts[field]);
    const callTimeout = ms("queryTimeoutMs", DEFAULT_CALL_TIMEOUT_MS);
    // Every connection, pooled or listening, is bounded: connecting, each statement on the server, a
    // transaction left idle, and a query whose answer never comes (the one bound that needs no server).
    const clientConfig: pg.ClientConfig = {
      connectionString: u.toString(),
      application_name: opts.applicationName ?? "fleetlink",
      options: `-c search_path=${schema}`,
      types: parseTypes,
      connectionTimeoutMillis: Math.min(ms("connectTimeoutMs", 5000), callTimeout),
      statement_timeout: ms("statementTimeoutMs", Math.max(1, Math.floor(callTimeout * 0.8))),
      idle_in_transaction_session_timeout: ms("idleInTransactionTimeoutMs", 10_000),
      query_timeout: callTimeout,
    };
    const pool = new pg.Pool({ ...clientConfig, max: opts.poolSize ?? 10 });
    // An idle client losing its connection must not crash the process; the next query reports it.
    pool.on("error", () => {});
    const store = new PostgresStore(pool, clientConfig, schema, opts);
    try {
      await store.migrate();
    } catch (e) {
      await pool.end();
      throw storeError(e);
    }
    return store;
  }

  /**
   * A pooled connection, within the call's time: waiting for a free one (the pool full of connections stuck
   * on a silent database) or for a new one to connect counts against it. The error listener is attached in the
   * pool's callback, not after an await: while a client is checked out the pool does not listen for its errors,
   * and the packet that ends a fresh connection can arrive in the same read as the one that completed it,
   * before a promise continuation would run; unheard, the 'error' would end the process.
   */
  private acquire(call: Call): Promise<Held> {
    const wait = left(call);
    return new Promise<Held>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(timedOut(call));
      }, wait);
      this.pool.connect((err, cl) => {
        if (settled) return void cl?.release();
        settled = true;
        clearTimeout(timer);
        if (err || !cl) return reject(storeError(err ?? new Error("the pool gave no client")));
        let lost: Error | undefined;
        const onError = (e: Error) => {
          lost ??= e;
        };
        cl.on("error", onError);
        resolve({
          client: cl,
          lost: () => lost,
          release: (e) => {
            cl.off("error", onError);
            cl.release(e ?? lost);
          },
        });
      });
    });
  }

  /**
   * Runs one statement on a connection, within what is left of the call. A query that times out on the client
   * (or whose connection died) fails as STORE_UNAVAILABLE; its holder then destroys the connection, never
   * reusing it with the query still running on it.
   */
  private async query(
    c: pg.PoolClient,
    call: Call,
    sql: string,
    params: readonly unknown[] = [],
    name?: string,
  ): Promise<Row[]> {
    const query_timeout = left(call);
    try {
      const res = await c.query({
        text: sql,
        values: params as unknown[],
        name,
        query_timeout,
      } as pg.QueryConfig);
      return res.rows;
    } catch (e) {
      throw e instanceof Error && e.message === "Query read timeout" ? timedOut(call) : storeError(e);
    }
  }

  /** One statement outside a transaction, on a connection of the pool held for it alone. */
  private async pooled(call: Call, sql: string, params?: readonly unknown[], name?: string): Promise<Row[]> {
    const held = await this.acquire(call);
    try {
      const rows = await this.query(held.client, call, sql, params, name);
      held.release();
      return rows;
    } catch (e) {
      held.release(isFleetlinkError(e, "STORE_UNAVAILABLE") ? (e as Error) : undefined);
      throw e;
    }
  }

  private async migrate(): Promise<void> {
    await this.tx(
      async (c) => {
        await c.q(`SET LOCAL statement_timeout = ${MIGRATION_TIMEOUT_MS}`);
        // Replicas starting together serialise here; the second sees the first one's migrations applied.
        await c.q("SELECT pg_advisory_xact_lock(hashtext($1))", [`fleetlink:migrate:${this.schema}`]);
        await c.q(`CREATE SCHEMA IF NOT EXISTS "${this.schema}"`);
        await c.q(
          "CREATE TABLE IF NOT EXISTS fleetlink_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at BIGINT)",
        );
        const [row] = await c.q("SELECT coalesce(max(version), 0) AS v FROM fleetlink_migrations");
        for (const m of postgresMigrations) {
          if (m.version <= Number(row!.v)) continue;
          await c.q(m.sql);
          await c.q("INSERT INTO fleetlink_migrations (version, name, applied_at) VALUES ($1, $2, $3)", [
            m.version,
            m.name,
            Date.now(),
          ]);
        }
      },
      "write",
      MIGRATION_TIMEOUT_MS + 5000,
    );
  }

  /**
   * A transaction (mode "write"), or the statements of a read each on its own pooled connection, all within one
   * call's time (queryTimeoutMs unless `boundMs`). A connection that timed out or was lost, possibly still
   * inside the transaction, is destroyed; one whose statement failed otherwise is rolled back and reused.
   */
  protected async tx<T>(
    fn: (c: SqlConn) => Promise<T>,
    mode: "read" | "write" = "write",
    boundMs: number = this.callTimeoutMs,
  ): Promise<T> {
    const call = callOf(boundMs);
    if (mode === "read") return fn(readConn((sql, params) => this.pooled(call, sql, params)));
    const held = await this.acquire(call);
    const q: SqlConn["q"] = (sql, params, name) => this.query(held.client, call, sql, params, name);
    try {
      const now = await this.begin(held.client, call);
      const out = await fn({ q, now });
      await q("COMMIT");
      held.release();
      return out;
    } catch (e) {
      const remaining = call.deadline - performance.now();
      if (held.lost() || isFleetlinkError(e, "STORE_UNAVAILABLE") || remaining < 1) held.release(e as Error);
      else
        await held.client
          .query({ text: "ROLLBACK", query_timeout: Math.ceil(remaining) } as pg.QueryConfig)
          .then(
            () => held.release(),
            (err: Error) => held.release(err),
          );
      throw e;
    }
  }

  /**
   * Opens the transaction and reads its time: the database's in the same round trip as BEGIN (two statements
   * in one simple query), or the injected clock's.
   */
  private async begin(client: pg.PoolClient, call: Call): Promise<number> {
    if (!this.dbClock) {
      await this.query(client, call, "BEGIN");
      return this.time();
    }
    const query_timeout = left(call);
    try {
      const res = (await client.query({
        text: `BEGIN; SELECT ${DB_NOW} AS now`,
        query_timeout,
      } as pg.QueryConfig)) as unknown as pg.QueryResult[];
      return Number(res[1]!.rows[0].now);
    } catch (e) {
      throw e instanceof Error && e.message === "Query read timeout" ? timedOut(call) : storeError(e);
    }
  }

  private get channel(): string {
    return `fleetlink_${this.schema}`.toLowerCase().slice(0, 63);
  }

  private readonly instance = newId();
  /** What the changes not announced yet concern: `all` once one did not say (see Change). */
  private pending: { all: boolean; nodes: Set<string>; runs: Set<string> } | null = null;
  /**
   * Sent after commit, outside the writing transaction: PostgreSQL serialises the commits of transactions
   * that NOTIFY, so notifying inside every write made them queue. Coalesced: at most one NOTIFY in flight,
   * and changes during it fold into one more. The payload names this handle, so its own echo is ignored, and
   * then, when every change it folds said what it concerns, those nodes and runs (`<instance>|{"n":[…],"r":[…]}`;
   * a payload that would pass PAYLOAD_MAX says nothing instead). A failed NOTIFY is not retried: the watchers'
   * probes and the hub's periodic checks cover a lost one.
   */
  private readonly notifier = new Coalesced(
    async () => {
      const p = this.pending;
      this.pending = null;
      if (!p) return;
      let payload = this.instance;
      if (!p.all) {
        const said = `${this.instance}|${JSON.stringify({ n: [...p.nodes], r: [...p.runs] })}`;
        if (said.length <= PAYLOAD_MAX) payload = said;
      }
      await this.pool.query("SELECT pg_notify($1, $2)", [this.channel, payload]);
    },
    () => {},
  );

  protected announce(change?: Change): void {
    this.pending ??= { all: false, nodes: new Set(), runs: new Set() };
    if (!change) this.pending.all = true;
    else {
      for (const n of change.nodes ?? []) this.pending.nodes.add(n);
      for (const r of change.runs ?? []) this.pending.runs.add(r);
    }
    this.notifier.trigger();
  }

  /**
   * One LISTEN connection per watcher, re-established with backoff (LISTEN_BACKOFF: 100 ms doubling to 1 s) whenever it fails or
   * is terminated; each (re)connection reports a change, since changes may have been missed while not listening.
   * A connection can also die without a word (half-open: a cut link, a frozen server), when it would never
   * hear anything again: so every listenProbeMs it notifies itself, and one that does not hear its probe back
   * within listenProbeMs is ended and replaced. Probes of other replicas, on the same channel, are ignored.
   */
  protected watchOthers(onChange: (change?: Change) => void): () => void {
    let stopped = false;
    let client: pg.Client | null = null;
    // The reconnect timer while not connected; the probe timer (next probe, or its deadline) while connected.
    let timer: ReturnType<typeof setTimeout> | null = null;
    const delays = new Backoff(LISTEN_BACKOFF);
    let probes = 0;
    const clearTimer = () => {
      if (timer) clearTimeout(timer);
      timer = null;
    };
    // Called for every error and end of a connection; acts once per connection.
    const retry = (c: pg.Client) => {
      if (client !== c) return;
      client = null;
      clearTimer();
      // With a query still unanswered (a probe on a silent connection), pg destroys the socket at once.
      void c.end().catch(() => {});
      if (stopped) return;
      timer = setTimeout(connect, delays.next()!);
    };
    const probeLater = (c: pg.Client, state: { expect: string | null }) => {
      timer = setTimeout(() => {
        if (client !== c) return;
        state.expect = `${PROBE}${this.instance}:${++probes}`;
        timer = setTimeout(() => retry(c), this.listenProbeMs);
        c.query("SELECT pg_notify($1, $2)", [this.channel, state.expect]).catch(() => retry(c));
      }, this.listenProbeMs);
    };
    const connect = async () => {
      timer = null;
      if (stopped) return;
      const c = new pg.Client(this.clientConfig);
      const state: { expect: string | null } = { expect: null };
      client = c;
      c.on("notification", (n) => {
        if (n.payload?.startsWith(PROBE)) {
          if (n.payload === state.expect && client === c) {
            state.expect = null;
            clearTimer();
            probeLater(c, state);
          }
          return;
        }
        const payload = n.payload ?? "";
        const bar = payload.indexOf("|");
        if ((bar < 0 ? payload : payload.slice(0, bar)) === this.instance) return;
        onChange(bar < 0 ? undefined : parseChange(payload.slice(bar + 1)));
      });
      c.on("error", () => retry(c));
      c.on("end", () => retry(c));
      try {
        await c.connect();
        await c.query(`LISTEN "${this.channel}"`);
        if (client !== c) return;
        delays.reset();
        onChange();
        probeLater(c, state);
      } catch {
        retry(c);
      }
    };
    void connect();
    return () => {
      stopped = true;
      clearTimer();
      const c = client;
      client = null;
      void c?.end().catch(() => {});
    };
  }

  async close(): Promise<void> {
    this.notifier.close();
    await this.pool.end();
  }
}
