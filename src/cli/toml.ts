import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";

/**
 * The TOML parser, loaded by the first file read (synchronously: the readers are): most commands read no
 * config file, and the CLI's start-up should not pay for one.
 */
let parser: typeof import("smol-toml") | undefined;
const toml = () => {
  parser ??= createRequire(import.meta.url)("smol-toml") as typeof import("smol-toml");
  return parser;
};

/** A configuration file problem: always names the file, and the key when one is at fault. */
export class ConfigError extends Error {
  constructor(file: string, key: string | undefined, message: string) {
    super(`${file}: ${key === undefined ? "" : `${key}: `}${message}`);
    this.name = "ConfigError";
  }
}

export type TomlTable = Record<string, unknown>;

/** Reads and parses a TOML file; a syntax error says where (line and column). */
export const readToml = (file: string): TomlTable => {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(file, undefined, `cannot read: ${(e as Error).message}`);
  }
  const { parse, TomlError } = toml();
  try {
    return parse(text) as TomlTable;
  } catch (e) {
    if (e instanceof TomlError)
      throw new ConfigError(
        file,
        undefined,
        `line ${e.line}, column ${e.column}: ${e.message.split("\n")[0]}`,
      );
    throw e;
  }
};

/** A config file holding a secret must be private, like a token file (a flag's value shows in `ps`). */
export const refuseOpenSecretFile = (file: string, secretKey: string): void => {
  const mode = statSync(file).mode;
  if (mode & 0o077)
    throw new ConfigError(
      file,
      secretKey,
      `holds a secret but the file is readable by others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`,
    );
};

export const isTable = (v: unknown): v is TomlTable =>
  typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);

/** "max-payload" → "max_payload": config keys are snake_case, flags kebab-case. */
export const snake = (s: string): string => s.replaceAll("-", "_");
