import { readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * This package's version, from package.json: two folders up from both src/util and dist/util. Read once, on
 * first use, so importing this module touches no file.
 */
let cached: string | undefined;
export const packageVersion = (): string => {
  cached ??= (
    JSON.parse(readFileSync(join(import.meta.dirname, "../../package.json"), "utf8")) as { version: string }
  ).version;
  return cached;
};
