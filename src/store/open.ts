import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { FleetlinkError } from "../protocol/errors.ts";
import { checkPositiveInt } from "./checks.ts";
// Types only: the backends themselves are imported when a store of their kind is opened, so that importing
// fleetlink never loads node:sqlite (missing before Node 22.5: the import would fail for every user) or pg.
import type { PostgresOptions } from "./postgres.ts";
import type { SqliteOptions } from "./sqlite.ts";
import type { Store } from "./store.ts";

export type OpenStoreOptions = SqliteOptions &
  PostgresOptions & {
    /**
     * Create the store (SQLite file, PostgreSQL schema and tables) when it does not exist yet; `false` refuses
     * with INVALID_ARGUMENT naming what is missing, for commands that only read or clean up. (Default: true)
     */
    create?: boolean;
  };

/**
 * The Node.js versions whose node:sqlite runs the SQLite store: numbered parameters (`?1`, which the shared
 * SQL's `$1` becomes) bind positionally from 22.20 and 24.7 (before: "column index out of range" on the first
 * query; 23.x never); `backup`, `isTransaction` and the `timeout` option are older. package.json's `engines`
 * says the same; a test keeps them in sync.
 */
export const NODE_ENGINES = "^22.20.0 || >=24.7.0";

/**
 * What to tell a user whose Node.js cannot run fleetlink's SQLite store (and so its CLI), or undefined when
 * `version` is one of NODE_ENGINES.
 */
export const nodeVersionProblem = (
  version: string = process.versions.node,
  execPath: string = process.execPath,
): string | undefined => {
  const [major = 0, minor = 0] = version.replace(/^v/, "").split(".").map(Number);
  if (major >= 25 || (major === 24 && minor >= 7) || (major === 22 && minor >= 20)) return undefined;
  return (
    `fleetlink needs Node.js 24.7 or newer (or 22.20 and later 22.x) for its SQLite store (node:sqlite); ` +
    `this is Node.js ${version.replace(/^v/, "")} (${execPath}). Install Node.js 24 LTS from ` +
    "https://nodejs.org/en/download (or `nvm install 24`); from a checkout, `npm ci` installs Node.js 24 into " +
    "the project and `npm run fleetlink -- <command>` uses it."
  );
};

const openSqlite = async (path: string, opts: OpenStoreOptions) => {
  const problem = nodeVersionProblem();
  if (problem) throw new FleetlinkError("UNSUPPORTED_STORE", problem);
  const inMemory = path === ":memory:" || path.startsWith("file:");
  if (opts.create === false && !inMemory) {
    const abs = resolve(path);
    if (!existsSync(abs))
      throw new FleetlinkError(
        "INVALID_ARGUMENT",
        `no SQLite store at ${abs}: check the path (\`fleetlink store migrate --db sqlite:${path}\` creates one)`,
        { field: "db" },
      );
    // Only look (read-only): opening it as a store would turn any file into one.
    const { DatabaseSync } = await import("node:sqlite");
    let ours = false;
    try {
      const db = new DatabaseSync(abs, { readOnly: true });
      try {
        ours = !!db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'fleetlink_migrations'").get();
      } finally {
        db.close();
      }
    } catch {
      // Not a database at all.
    }
    if (!ours)
      throw new FleetlinkError("INVALID_ARGUMENT", `${abs} is not a fleetlink SQLite store`, { field: "db" });
  }
  const { SqliteStore } = await import("./sqlite.ts");
  return new SqliteStore(path, opts);
};

/**
 * Loads an optional dependency (`load` imports it, or a module of ours that imports it): when the package
 * `name` is not installed, UNSUPPORTED_STORE saying which and how to install it, instead of Node's
 * ERR_MODULE_NOT_FOUND. Any other failure is passed on as it is.
 */
export const optionalPackage = async <T>(name: string, what: string, load: () => Promise<T>): Promise<T> => {
  try {
    return await load();
  } catch (e) {
    const missing =
      (e as { code?: unknown } | null)?.code === "ERR_MODULE_NOT_FOUND" &&
      (e as Error).message.includes(`'${name}'`);
    if (!missing) throw e;
    throw new FleetlinkError(
      "UNSUPPORTED_STORE",
      `${what} needs the ${name} package, which is not installed: npm install ${name}`,
      { cause: e },
    );
  }
};

/** pg is loaded only when a PostgreSQL store is opened: SQLite users need not install it. */
const loadPostgres = () => optionalPackage("pg", "a PostgreSQL store", () => import("./postgres.ts"));

/** With `create: false`: refuses a database or schema without fleetlink's tables before anything is created. */
const checkPostgresExists = async (url: string, opts: OpenStoreOptions): Promise<void> => {
  const u = new URL(url);
  const schema = u.searchParams.get("schema") ?? "public";
  u.searchParams.delete("schema");
  const { default: pg } = await optionalPackage("pg", "a PostgreSQL store", () => import("pg"));
  // Bounded like every store call (queryTimeoutMs): a database that accepts and then stays silent fails too.
  const bound =
    opts.queryTimeoutMs === undefined ? 5000 : checkPositiveInt("queryTimeoutMs", opts.queryTimeoutMs);
  const client = new pg.Client({
    connectionString: u.toString(),
    connectionTimeoutMillis: Math.min(opts.connectTimeoutMs ?? 5000, bound),
    query_timeout: bound,
  });
  client.on("error", () => {});
  const where = `schema ${JSON.stringify(schema)} of ${u.host}${u.pathname}`;
  let found: boolean;
  try {
    await client.connect();
    const r = await client.query("SELECT to_regclass($1) IS NOT NULL AS found", [
      `"${schema.replaceAll('"', '""')}".fleetlink_migrations`,
    ]);
    found = r.rows[0]?.found === true;
  } catch (e) {
    throw new FleetlinkError("STORE_UNAVAILABLE", `${where}: ${(e as Error).message}`, { cause: e });
  } finally {
    await client.end().catch(() => {});
  }
  if (!found)
    throw new FleetlinkError("INVALID_ARGUMENT", `no fleetlink store in ${where}: check --db`, {
      field: "db",
    });
};

/**
 * Opens a store by URL:
 * - `memory:` a fresh private SQLite database in memory, gone when closed (tests, demos): each call opens its own;
 * - `sqlite:PATH` a SQLite file several processes may share (`?synchronous=full` for power-loss durability);
 * - `postgres://…` / `postgresql://…` PostgreSQL (`?schema=NAME` to use a schema other than public).
 */
export const openStore = async (url: string, opts: OpenStoreOptions = {}): Promise<Store> => {
  // The same SQLite store as a file's (one implementation of every rule), on a private `:memory:` database.
  if (url === "memory:" || url === "memory") return openSqlite(":memory:", opts);
  if (url.startsWith("sqlite:")) {
    const [rest, query = ""] = url.slice("sqlite:".length).replace(/^\/\//, "").split("?", 2) as [
      string,
      string?,
    ];
    if (!rest) throw new FleetlinkError("UNSUPPORTED_STORE", "sqlite: needs a path, e.g. sqlite:./fleet.db");
    const sync = new URLSearchParams(query).get("synchronous");
    return openSqlite(rest, { ...opts, synchronous: sync === "full" ? "full" : opts.synchronous });
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    if (opts.create === false) await checkPostgresExists(url, opts);
    const { PostgresStore } = await loadPostgres();
    return PostgresStore.open(url, opts);
  }
  throw new FleetlinkError(
    "UNSUPPORTED_STORE",
    `unknown store URL ${JSON.stringify(url)}: use memory:, sqlite:PATH or postgres://…`,
  );
};
