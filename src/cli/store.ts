import { Command, Option } from "commander";
import type { OpenStoreOptions } from "../store/open.ts";
import { parseDuration } from "./flags.ts";
import { examples } from "./output.ts";

/** The store code is imported when a subcommand runs, not when the CLI starts. */
const openStore = async (url: string, opts?: OpenStoreOptions) =>
  (await import("../store/open.ts")).openStore(url, opts);

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
  // Reading or cleaning up a store that is not there is a typo, never a reason to create one.
  cmd
    .command("stats")
    .description("Counts of runs, nodes, instructions and replies.")
    .addOption(db())
    .action(async (o) => {
      const s = await openStore(o.db, { create: false });
      try {
        process.stdout.write(`${JSON.stringify(await s.stats(), null, 2)}\n`);
      } finally {
        await s.close();
      }
    });
  cmd
    .command("cleanup")
    .description(
      "Clean up what is older than --older-than: finish abandoned runs (no live instruction, no activity), " +
        "delete ended, claimed messages, finished runs, unusable enrollment tokens, and nodes offline, " +
        "unregistered or never approved (holding no live instruction). Prints the counts as JSON.",
    )
    .addOption(db())
    .addOption(
      new Option("--older-than <duration>", "age, with a unit: 30m, 24h, 7d")
        .argParser((v) => parseDuration(v, "--older-than"))
        .default(24 * 3600 * 1000, "24h"),
    )
    .action(async (o) => {
      const s = await openStore(o.db, { create: false });
      try {
        process.stdout.write(`${JSON.stringify(await s.cleanup(o.olderThan))}\n`);
      } finally {
        await s.close();
      }
    });
  examples(cmd, [
    "fleetlink store migrate --db 'postgres://user@db:5432/fleet?schema=prod'",
    "fleetlink store stats --db sqlite:./fleet.db",
    "fleetlink store cleanup --db sqlite:./fleet.db --older-than 24h",
  ]);
  return cmd;
};
