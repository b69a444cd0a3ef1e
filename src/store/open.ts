import { FleetlinkError } from "../protocol/errors.ts";
import { MemoryStore } from "./memory.ts";
import { type PostgresOptions, PostgresStore } from "./postgres.ts";
import { type SqliteOptions, SqliteStore } from "./sqlite.ts";
import type { Store } from "./store.ts";

export type OpenStoreOptions = SqliteOptions & PostgresOptions;

/**
 * Opens a store by URL:
 * - `memory:` an in-process store (tests);
 * - `sqlite:PATH` a SQLite file several processes may share (`?synchronous=full` for power-loss durability);
 * - `postgres://…` / `postgresql://…` PostgreSQL (`?schema=NAME` to use a schema other than public).
 */
export const openStore = async (url: string, opts: OpenStoreOptions = {}): Promise<Store> => {
  if (url === "memory:" || url === "memory") return new MemoryStore(opts);
  if (url.startsWith("sqlite:")) {
    const [rest, query = ""] = url.slice("sqlite:".length).replace(/^\/\//, "").split("?", 2) as [
      string,
      string?,
    ];
    if (!rest) throw new FleetlinkError("UNSUPPORTED_STORE", "sqlite: needs a path, e.g. sqlite:./fleet.db");
    const sync = new URLSearchParams(query).get("synchronous");
    return new SqliteStore(rest, { ...opts, synchronous: sync === "full" ? "full" : opts.synchronous });
  }
  if (/^postgres(ql)?:\/\//.test(url)) return PostgresStore.open(url, opts);
  throw new FleetlinkError(
    "UNSUPPORTED_STORE",
    `unknown store URL ${JSON.stringify(url)}: use memory:, sqlite:PATH or postgres://…`,
  );
};
