import { Command } from "commander";
import { packageVersion } from "../util/package-version.ts";
import { examples, show, withJson } from "./output.ts";

/** The package's version (package.json). */
export const CLI_VERSION: string = packageVersion();

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
