import { Command, Option } from "commander";
import { HUB_RUN, pushHubSnapshot, restoreHubSnapshot } from "../checkpoint/hub-state.ts";
import { listCheckpoints } from "../checkpoint/layout.ts";
import { openObjectStore } from "../checkpoint/object-store.ts";
import { Fleet } from "../coordinator/fleet.ts";
import { SqliteStore } from "../store/sqlite.ts";
import { progressBar } from "./progress.ts";

const out = (v: unknown) =>
  process.stdout.write(`${typeof v === "string" ? v : JSON.stringify(v, null, 2)}\n`);
const sqlitePath = (db: string) => {
  if (!db.startsWith("sqlite:")) throw new Error("--db: only sqlite:PATH hub databases are snapshotted");
  return db.slice("sqlite:".length).replace(/^\/\//, "").split("?")[0]!;
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
    .option("--keep <n>", "complete checkpoints to keep", "3")
    .action(async (o) => {
      if (o.db) {
        if (!o.store) throw new Error("--store is required with --db");
        const s = new SqliteStore(sqlitePath(o.db));
        try {
          const m = await pushHubSnapshot(s, openObjectStore(o.store), {
            keep: Number(o.keep),
            onProgress: progressBar("push"),
          });
          out({ id: m.id, bytes: m.hosts[0]!.size, sha256: m.hosts[0]!.sha256 });
        } finally {
          await s.close();
        }
        return;
      }
      const fleet = await fleetOf(o);
      out(await fleet.checkpoints.push(o.run));
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
    .option("--force", "replace a local database even if it is newer")
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
      out(await fleet.checkpoints.pull(o.run, o.id));
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
