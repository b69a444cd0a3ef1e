import { Command, Option } from "commander";
import { openStore } from "../store/open.ts";

export const storeCommand = (): Command => {
  const cmd = new Command("store").description("Inspect or maintain a store.");
  const db = () => new Option("--db <url>", "store URL").env("FLEETLINK_DB").default("sqlite:./fleetlink.db");
  cmd
    .command("migrate")
    .description("Create or upgrade the schema (serve does this too).")
    .addOption(db())
    .action(async (o) => {
      const s = await openStore(o.db);
      await s.close();
      process.stdout.write(`migrated ${o.db}\n`);
    });
  cmd
    .command("stats")
    .description("Counts of runs, nodes, instructions and replies.")
    .addOption(db())
    .action(async (o) => {
      const s = await openStore(o.db);
      process.stdout.write(`${JSON.stringify(await s.stats(), null, 2)}\n`);
      await s.close();
    });
  cmd
    .command("cleanup")
    .description("Delete ended, claimed messages and finished runs older than --older-than ms.")
    .addOption(db())
    .option("--older-than <ms>", "age", String(24 * 3600 * 1000))
    .action(async (o) => {
      const s = await openStore(o.db);
      process.stdout.write(`${JSON.stringify(await s.cleanup(Number(o.olderThan)))}\n`);
      await s.close();
    });
  return cmd;
};
