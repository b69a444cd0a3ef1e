import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import { examples, show, withJson } from "./output.ts";

/** The package's version, read from package.json (two levels up from both src/cli and dist/cli). */
export const CLI_VERSION: string = (
  JSON.parse(readFileSync(join(import.meta.dirname, "../../package.json"), "utf8")) as { version: string }
).version;

export const versionCommand = (): Command => {
  const cmd = withJson(new Command("version").description("Print the versions of fleetlink and Node.js."));
  examples(cmd, ["fleetlink version", "fleetlink version --json"]);
  return cmd.action((_o, c: Command) =>
    show(
      c,
      {
        fleetlink: CLI_VERSION,
        node: process.versions.node,
        platform: `${process.platform}-${process.arch}`,
      },
      (v) => `fleetlink ${v.fleetlink} (Node.js ${v.node}, ${v.platform})`,
    ),
  );
};
