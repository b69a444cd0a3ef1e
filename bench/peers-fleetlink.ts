// bench:peers contestants fleetlink-sqlite and fleetlink-postgres: the hub is `fleetlink serve` (its own OS
// process), the workers are NodeAgents with an echo handler in one worker process (bench/fleet-worker.ts), the
// coordinator is a Fleet with one run in this process. A call is `configuration([node]).call(quorum all)`;
// the fan-out is one quorum-"all" call over three nodes.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { Fleet } from "../src/coordinator/fleet.ts";
import type { Configuration } from "../src/coordinator/run.ts";
import { type Backend, benchStore, type NodeWorkers, startHub, startNodes, TOKEN } from "./fleet-worker.ts";
import { CALL_TIMEOUT_MS, PAYLOAD, type System } from "./peers-common.ts";
import { pgSettings, postgresPids } from "./peers-pgboss.ts";

const fleetlinkVersion = (): string =>
  (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string })
    .version;

/** The code being measured: the lead changes the hot path while this benchmark exists. */
const codeVersion = (): string => {
  const root = new URL("..", import.meta.url).pathname;
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], {
      cwd: root,
      encoding: "utf8",
    }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src"], {
      cwd: root,
      encoding: "utf8",
    }).trim();
    return `${head}${dirty ? " + uncommitted changes in src/" : ""}`;
  } catch {
    return "unknown commit";
  }
};

export const fleetlinkSystem = async (backend: Backend): Promise<System> => {
  const pg = backend === "postgres" ? await pgSettings() : undefined;
  const store = benchStore(backend, "peers");
  const hub = await startHub(store.url).catch(async (e) => {
    await store.cleanup();
    throw e;
  });
  let fleet: Fleet | undefined;
  try {
    fleet = await Fleet.connect({ hub: hub.url, token: TOKEN });
    const run = await fleet.createRun();
    let nodes: NodeWorkers | undefined;
    let singles: Configuration[] = [];
    let three: Configuration | undefined;
    let generation = 0;
    const opts = { quorum: "all", timeoutMs: CALL_TIMEOUT_MS } as const;
    const f = fleet;
    return {
      name: `fleetlink-${backend}`,
      durability: backend === "sqlite" ? "SQLite WAL, sync=NORMAL" : "PostgreSQL",
      durabilityNote:
        backend === "sqlite"
          ? "fleetlink on SQLite: instruction and reply rows committed to a WAL-mode SQLite file with synchronous=NORMAL (src/store/sqlite.ts default): a commit survives a hub crash, a power loss can lose the last commits before a checkpoint; leases redeliver an instruction whose node vanished, exactly one reply per instruction"
          : `fleetlink on PostgreSQL: instruction and reply rows committed in PostgreSQL (${pg!.durability}); leases redeliver, exactly one reply per instruction`,
      version: `fleetlink ${fleetlinkVersion()} at ${codeVersion()}${pg ? `, PostgreSQL ${pg.version}` : ""}, node:sqlite (Node ${process.version})`,
      hubPid: () => hub.pid,
      middlePids: () => (backend === "postgres" ? [hub.pid, ...postgresPids()] : [hub.pid]),
      workerPids: () => nodes?.pids ?? [],
      async setWorkers(k) {
        await nodes?.stop();
        nodes = undefined;
        nodes = await startNodes(hub.url, k, { workers: 1, prefix: `peers${generation++}` });
        singles = nodes.ids.map((id) => run.configuration([id]));
        three = k >= 3 ? run.configuration(nodes.ids.slice(0, 3)) : undefined;
      },
      call: async (i) => {
        await singles[i % singles.length]!.call("echo", PAYLOAD, opts);
      },
      fanout: async () => {
        if (!three) throw new Error("fleetlink: fan-out needs 3 nodes");
        await three.call("echo", PAYLOAD, opts);
      },
      close: async () => {
        await f.close();
        await nodes?.stop();
        await hub.stop({ kill: true });
        await store.cleanup();
      },
    };
  } catch (e) {
    await fleet?.close().catch(() => undefined);
    await hub.stop({ kill: true });
    await store.cleanup();
    throw e;
  }
};
