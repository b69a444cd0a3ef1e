// bench:peers contestants fleetlink-sqlite and fleetlink-postgres: the hub is `fleetlink serve` (its own OS
// process), the workers are NodeAgents with an echo handler in one worker process (bench/fleet-worker.ts), the
// coordinator is a Fleet with one run in this process. A call is `configuration([node]).call(quorum all)`;
// the fan-out is one quorum-"all" call over three nodes.
// fleetlink-postgres-2r (issue 20): two `fleetlink serve` replicas over one PostgreSQL schema, as a scaled-out
// deployment runs them. Half the nodes dial replica A, half replica B (one worker process each), and this
// process holds two coordinators (a Fleet and a run on each replica). Call i goes from coordinator i % 2 to node
// i % n, so half of the calls cross replicas (pushed on one, delivered and answered on the other, woken by
// NOTIFY), as they do when a load balancer spreads nodes and coordinators without affinity.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { Fleet } from "../src/coordinator/fleet.ts";
import type { Configuration } from "../src/coordinator/run.ts";
import {
  type Backend,
  benchStore,
  type HubProc,
  type NodeWorkers,
  startHub,
  startNodes,
  TOKEN,
} from "./fleet-worker.ts";
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

export const fleetlinkSystem = async (backend: Backend, replicas: 1 | 2 = 1): Promise<System> => {
  const pg = backend === "postgres" ? await pgSettings() : undefined;
  const store = benchStore(backend, "peers");
  const hubs: HubProc[] = [];
  const fleets: Fleet[] = [];
  const stopAll = async () => {
    for (const f of fleets) await f.close().catch(() => undefined);
    for (const h of hubs) await h.stop({ kill: true });
    await store.cleanup();
  };
  try {
    for (let r = 0; r < replicas; r++) hubs.push(await startHub(store.url));
    for (const h of hubs) fleets.push(await Fleet.connect({ hub: h.url, token: TOKEN }));
    const runs = await Promise.all(fleets.map((f) => f.createRun()));
    let nodes: NodeWorkers[] = [];
    // singles[c][k]: coordinator c's configuration of node k alone.
    let singles: Configuration[][] = [];
    let three: Configuration | undefined;
    let generation = 0;
    const opts = { quorum: "all", timeoutMs: CALL_TIMEOUT_MS } as const;
    const hub = hubs[0]!;
    return {
      name: `fleetlink-${backend}${replicas > 1 ? `-${replicas}r` : ""}`,
      durability: backend === "sqlite" ? "SQLite WAL, sync=NORMAL" : "PostgreSQL",
      durabilityNote:
        backend === "sqlite"
          ? "fleetlink on SQLite: instruction and reply rows committed to a WAL-mode SQLite file with synchronous=NORMAL (src/store/sqlite.ts default): a commit survives a hub crash, a power loss can lose the last commits before a checkpoint; leases redeliver an instruction whose node vanished, exactly one reply per instruction"
          : `fleetlink on PostgreSQL: instruction and reply rows committed in PostgreSQL (${pg!.durability}); leases redeliver, exactly one reply per instruction`,
      version: `fleetlink ${fleetlinkVersion()} at ${codeVersion()}${pg ? `, PostgreSQL ${pg.version}` : ""}, node:sqlite (Node ${process.version})`,
      // The first replica's process; every replica's is in middlePids.
      hubPid: () => hub.pid,
      middlePids: () => [...hubs.map((h) => h.pid), ...(backend === "postgres" ? postgresPids() : [])],
      workerPids: () => nodes.flatMap((n) => n.pids),
      async setWorkers(k) {
        for (const n of nodes) await n.stop();
        nodes = [];
        const gen = generation++;
        // k nodes split over the replicas (replica 0 takes the odd one); one worker process per replica.
        for (const [r, h] of hubs.entries()) {
          const count = Math.floor((k + replicas - 1 - r) / replicas);
          if (count > 0)
            nodes.push(await startNodes(h.url, count, { workers: 1, prefix: `peers${gen}r${r}` }));
        }
        const ids = nodes.flatMap((n) => n.ids);
        singles = runs.map((run) => ids.map((id) => run.configuration([id])));
        three = k >= 3 ? runs[0]!.configuration(ids.slice(0, 3)) : undefined;
      },
      call: async (i) => {
        const mine = singles[i % singles.length]!;
        await mine[i % mine.length]!.call("echo", PAYLOAD, opts);
      },
      fanout: async () => {
        if (!three) throw new Error("fleetlink: fan-out needs 3 nodes");
        await three.call("echo", PAYLOAD, opts);
      },
      close: async () => {
        for (const f of fleets) await f.close();
        fleets.length = 0;
        for (const n of nodes) await n.stop();
        await stopAll();
      },
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
};
