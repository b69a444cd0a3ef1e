import { Command, InvalidArgumentError, Option } from "commander";
import { HUB_RUN, pushHubSnapshot, restoreHubSnapshot } from "../checkpoint/hub-state.ts";
import { listCheckpoints } from "../checkpoint/layout.ts";
import { openObjectStore } from "../checkpoint/object-store.ts";
import { Fleet } from "../coordinator/fleet.ts";
import { SqliteStore } from "../store/sqlite.ts";
import { parseDuration, parseInteger } from "./flags.ts";
import { progressBar } from "./progress.ts";

const out = (v: unknown) =>
  process.stdout.write(`${typeof v === "string" ? v : JSON.stringify(v, null, 2)}\n`);
const sqlitePath = (db: string) => {
  if (!db.startsWith("sqlite:")) throw new Error("--db: only sqlite:PATH hub databases are snapshotted");
  return db.slice("sqlite:".length).replace(/^\/\//, "").split("?")[0]!;
};

const parseStandby = (s: string): { hostIdx: number; nodeId: string } => {
  const [k, nodeId] = s.split("=");
  if (nodeId === undefined || nodeId === "")
    throw new InvalidArgumentError(`--standby: ${JSON.stringify(s)} is not HOST=NODE_ID`);
  return { hostIdx: parseInteger("--standby", 0, 9999)(k ?? ""), nodeId };
};

/**
 * `fleetlink checkpoint …`: the hub's own SQLite state (`--db`) or a fleet run's checkpoints (`--hub --run`),
 * on object storage (`--store file://DIR | s3://BUCKET/PREFIX`).
 */
export const checkpointCommand = (): Command => {
  const cmd = new Command("checkpoint").description("Push, pull, list and inspect checkpoints.");
  const store = () =>
    new Option("--store <url>", "object storage: file://DIR or s3://BUCKET/PREFIX").env(
      "FLEETLINK_CHECKPOINT_STORE",
    );
  const hub = () => new Option("--hub <url>", "hub URL (fleet checkpoints)").env("FLEETLINK_HUB");
  const token = () => new Option("--token <token>", "coordinator token").env("FLEETLINK_TOKEN");
  const timeout = () =>
    new Option("--timeout <duration>", "fleet: how long to wait for the hosts, e.g. 30s or 10m")
      .default(600_000, "10m")
      .argParser((s) => {
        const ms = parseDuration(s, "--timeout");
        if (ms < 1000 || ms > 7 * 86_400_000)
          throw new InvalidArgumentError("--timeout: must be between 1s and 7d");
        return ms;
      });
  const fleetOf = (o: { hub?: string; token?: string }) => {
    if (!o.hub || !o.token) throw new Error("--hub and --token are needed for fleet checkpoints");
    return Fleet.connect({ hub: o.hub.split(","), token: o.token });
  };

  cmd
    .command("push")
    .description("Snapshot a hub database (--db) or push a run's fleet checkpoint (--hub --run).")
    .addOption(store())
    .option("--db <url>", "hub database to snapshot (sqlite:PATH)")
    .addOption(hub())
    .addOption(token())
    .option("--run <id>", "run whose hosts push")
    .addOption(
      new Option("--keep <n>", "complete checkpoints to keep (--db)")
        .default(3)
        .argParser(parseInteger("--keep", 1, 1000)),
    )
    .addOption(timeout())
    .action(async (o) => {
      if (o.db) {
        if (!o.store) throw new Error("--store is required with --db");
        const s = new SqliteStore(sqlitePath(o.db));
        try {
          const m = await pushHubSnapshot(s, openObjectStore(o.store), {
            keep: o.keep,
            onProgress: progressBar("push"),
          });
          out({ id: m.id, bytes: m.hosts[0]!.size, sha256: m.hosts[0]!.sha256 });
        } finally {
          await s.close();
        }
        return;
      }
      const fleet = await fleetOf(o);
      out(await fleet.checkpoints.push(o.run, { timeoutMs: o.timeout }));
      await fleet.close();
    });

  cmd
    .command("pull")
    .description("Restore a hub database (--db) or a run's hosts (--hub --run) from a checkpoint.")
    .addOption(store())
    .option("--db <url>", "hub database to restore (sqlite:PATH); stop the hub first")
    .addOption(hub())
    .addOption(token())
    .option("--run <id>", "run whose hosts pull")
    .option("--id <id>", "checkpoint id or latest", "latest")
    .option("--force", "replace a local database even if it is newer (never one a running hub has open)")
    .option("--allow-role-changes", "fleet: restore by host index even if roles moved between nodes since")
    .addOption(timeout())
    .action(async (o) => {
      if (o.db) {
        if (!o.store) throw new Error("--store is required with --db");
        out(
          await restoreHubSnapshot(openObjectStore(o.store), sqlitePath(o.db), o.id, {
            force: o.force,
            onProgress: progressBar("pull"),
          }),
        );
        return;
      }
      const fleet = await fleetOf(o);
      out(
        await fleet.checkpoints.pull(o.run, o.id, {
          timeoutMs: o.timeout,
          allowRoleChanges: o.allowRoleChanges === true,
        }),
      );
      await fleet.close();
    });

  cmd
    .command("list")
    .description("Complete checkpoints, oldest first.")
    .addOption(store())
    .addOption(hub())
    .addOption(token())
    .option("--run <id>", `run id, or "${HUB_RUN}" for hub snapshots`, HUB_RUN)
    .action(async (o) => {
      if (o.store) {
        const all = await listCheckpoints(openObjectStore(o.store), o.run);
        if (all.length === 0) process.stderr.write(`no complete checkpoints for ${o.run} in ${o.store}\n`);
        for (const m of all)
          out(
            `${m.id}  ${new Date(m.createdAt).toISOString()}  ${m.nHosts} host(s)  ${m.hosts.reduce((n, h) => n + h.size, 0)} bytes`,
          );
        return;
      }
      const fleet = await fleetOf(o);
      out(await fleet.checkpoints.list(o.run));
      await fleet.close();
    });

  cmd
    .command("assign")
    .description("Give a run's host roles: host k = the k-th node; prints what changed.")
    .addOption(hub())
    .addOption(token())
    .requiredOption("--run <id>", "run id")
    .requiredOption("--hosts <ids>", "node ids, comma-separated: host 0, host 1, …")
    .addOption(
      new Option("--standby <k=id,...>", "warm standbys, e.g. 1=NODE_ID (several per host allowed)")
        .default([], "none")
        .argParser((s) => s.split(",").map(parseStandby)),
    )
    .action(async (o) => {
      const fleet = await fleetOf(o);
      try {
        const r = await fleet.checkpoints.assign(o.run, String(o.hosts).split(","), o.standby);
        for (const c of r.changes) process.stderr.write(`${c.text}\n`);
        if (r.changes.length === 0) process.stderr.write("no change\n");
        out(r);
      } finally {
        await fleet.close();
      }
    });

  cmd
    .command("status")
    .description("Push and pull status of a run's fleet checkpoints.")
    .addOption(hub())
    .addOption(token())
    .requiredOption("--run <id>", "run id")
    .action(async (o) => {
      const fleet = await fleetOf(o);
      out(await fleet.checkpoints.status(o.run));
      await fleet.close();
    });
  return cmd;
};
