import { type Command, InvalidArgumentError, Option } from "commander";
import { ConfigError, isTable, readToml, refuseOpenSecretFile, snake } from "./toml.ts";

/** Options whose value is a secret: a config file holding one must be mode 600. */
const SECRET_KEYS = new Set(["token", "enroll_token"]);
/**
 * Pairs of options of which only one may be given (`--token` / `--token-file`): a flag or variable for either
 * one overrides the config file's value for both, so `FLEETLINK_TOKEN` beats a file's `token_file`.
 */
const PAIRS: [string, string][] = [
  ["token", "tokenFile"],
  ["enrollToken", "enrollTokenFile"],
];
const GIVEN = new Set(["cli", "env"]);

/**
 * `--config FILE` on a command: every other option of it has a snake_case key (`--max-payload` →
 * `max_payload`, `--no-static-enroll-token` → `static_enroll_token = false`). Precedence: flag > environment
 * variable > file > default.
 */
export const configOption = (what: string): Option =>
  new Option(
    "--config <file>",
    `TOML file with ${what}'s options: a snake_case key per flag (max_payload = "4MiB"); flags and env override it`,
  );

const keyOf = (o: Option): string => snake(o.negate ? o.name().replace(/^no-/, "") : o.name());

/**
 * Applies `cmd`'s `--config` file to the options not given as a flag or environment variable. Each value is
 * checked as its flag would be (the same parser and choices), so a bad value fails before anything starts,
 * naming the file and the key; so does a key that is no option of the command.
 */
export const applyConfigFile = (cmd: Command): void => {
  const file = cmd.opts().config as string | undefined;
  if (file === undefined) return;
  const table = readToml(file);
  const byKey = new Map(cmd.options.filter((o) => o.long && o.name() !== "config").map((o) => [keyOf(o), o]));
  const src = (attr: string) => cmd.getOptionValueSource(attr);
  for (const [key, raw] of Object.entries(table)) {
    const opt = byKey.get(key);
    if (!opt) {
      const hint = byKey.has(snake(key))
        ? ` (keys are snake_case: ${snake(key)})`
        : `; known keys: ${[...byKey.keys()].join(", ")}`;
      throw new ConfigError(file, key, `unknown key${hint}`);
    }
    const attr = opt.attributeName();
    if (GIVEN.has(src(attr) ?? "")) continue;
    const pair = PAIRS.find((p) => p.includes(attr));
    if (pair?.some((a) => GIVEN.has(src(a) ?? ""))) continue;
    if (SECRET_KEYS.has(key)) refuseOpenSecretFile(file, key);
    cmd.setOptionValueWithSource(attr, parseValue(file, key, opt, raw), "config");
  }
};

const parseValue = (file: string, key: string, opt: Option, raw: unknown): unknown => {
  const takesValue = opt.required || opt.optional;
  if (!takesValue) {
    if (typeof raw !== "boolean") throw new ConfigError(file, key, `must be true or false, not ${show(raw)}`);
    // A negated flag (--no-static-enroll-token) has the positive key: static_enroll_token = false.
    return raw;
  }
  let text: string;
  if (typeof raw === "string") text = raw;
  else if (typeof raw === "number" && Number.isFinite(raw)) text = String(raw);
  else if (Array.isArray(raw) && raw.every((x) => typeof x === "string")) text = raw.join(",");
  else
    throw new ConfigError(
      file,
      key,
      `must be a string${isTable(raw) ? "" : " or a number"}, not ${show(raw)}`,
    );
  if (opt.argChoices && !opt.argChoices.includes(text))
    throw new ConfigError(file, key, `${show(raw)} is not one of ${opt.argChoices.join(", ")}`);
  if (!opt.parseArg) return text;
  try {
    return opt.parseArg(text, undefined);
  } catch (e) {
    if (e instanceof InvalidArgumentError || e instanceof Error)
      throw new ConfigError(file, key, `${show(raw)}: ${e.message.replace(/^--[\w-]+: /, "")}`);
    throw e;
  }
};

const show = (v: unknown): string => (isTable(v) ? "a table" : JSON.stringify(v));
