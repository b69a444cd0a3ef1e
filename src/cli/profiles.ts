import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { ConfigError, isTable, readToml, refuseOpenSecretFile } from "./toml.ts";

/** One named hub in the CLI's config file: where it is and how to authenticate. */
export interface Profile {
  name: string;
  /** Hub replica URLs. */
  hubs?: string[];
  token?: string;
  /** Absolute path (relative paths in the file are relative to the file). */
  tokenFile?: string;
}

const PROFILE_KEYS = ["hub", "token", "token_file"] as const;
const TOP_KEYS = ["default_profile", "profiles"] as const;

/**
 * Where the CLI's config file is: `$FLEETLINK_CONFIG`, else `$XDG_CONFIG_HOME/fleetlink/config.toml`, else
 * `~/.config/fleetlink/config.toml`.
 */
export const configPath = (env: NodeJS.ProcessEnv = process.env): string =>
  env.FLEETLINK_CONFIG ||
  join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config"), "fleetlink", "config.toml");

const expandPath = (file: string, p: string): string => {
  const home = p === "~" || p.startsWith("~/") ? join(process.env.HOME || homedir(), p.slice(1)) : p;
  return isAbsolute(home) ? home : resolve(dirname(file), home);
};

/**
 * The profile to use: `name` (from `--profile` / `FLEETLINK_PROFILE`), else the file's `default_profile`,
 * else none. A missing file is no profile at all, unless one was asked for by name.
 */
export const loadProfile = (name: string | undefined, file = configPath()): Profile | undefined => {
  if (!existsSync(file)) {
    if (name !== undefined)
      throw new ConfigError(file, undefined, `--profile ${name}: there is no config file (FLEETLINK_CONFIG)`);
    return undefined;
  }
  const t = readToml(file);
  for (const k of Object.keys(t))
    if (!(TOP_KEYS as readonly string[]).includes(k))
      throw new ConfigError(file, k, `unknown key; known keys: ${TOP_KEYS.join(", ")}`);
  const profiles = t.profiles ?? {};
  if (!isTable(profiles)) throw new ConfigError(file, "profiles", "must be a table: [profiles.NAME]");
  for (const [p, v] of Object.entries(profiles)) checkProfile(file, p, v);
  // Any token in the file, used now or not, makes it a secret file.
  for (const [p, v] of Object.entries(profiles))
    if ((v as Record<string, unknown>).token !== undefined) refuseOpenSecretFile(file, `profiles.${p}.token`);
  if (t.default_profile !== undefined && typeof t.default_profile !== "string")
    throw new ConfigError(file, "default_profile", "must be a string");
  const chosen = name ?? (t.default_profile as string | undefined);
  if (chosen === undefined) return undefined;
  const raw = profiles[chosen];
  if (raw === undefined) {
    const where = name === undefined ? "default_profile" : `--profile ${name}`;
    const known = Object.keys(profiles).join(", ") || "none";
    throw new ConfigError(file, where, `no profile ${JSON.stringify(chosen)} (profiles: ${known})`);
  }
  const p = raw as Record<string, unknown>;
  return {
    name: chosen,
    ...(p.hub === undefined
      ? {}
      : {
          hubs: Array.isArray(p.hub)
            ? (p.hub as string[])
            : String(p.hub)
                .split(",")
                .map((u) => u.trim()),
        }),
    ...(p.token === undefined ? {} : { token: p.token as string }),
    ...(p.token_file === undefined ? {} : { tokenFile: expandPath(file, p.token_file as string) }),
  };
};

const checkProfile = (file: string, name: string, v: unknown): void => {
  const at = `profiles.${name}`;
  if (!isTable(v)) throw new ConfigError(file, at, "must be a table");
  for (const [k, x] of Object.entries(v)) {
    if (!(PROFILE_KEYS as readonly string[]).includes(k))
      throw new ConfigError(file, `${at}.${k}`, `unknown key; known keys: ${PROFILE_KEYS.join(", ")}`);
    const ok =
      k === "hub"
        ? (typeof x === "string" ||
            (Array.isArray(x) && x.length > 0 && x.every((u) => typeof u === "string"))) &&
          [x]
            .flat()
            .flatMap((u) => String(u).split(","))
            .every((u) => /^https?:\/\//.test(u.trim()))
        : typeof x === "string" && x.length > 0;
    if (!ok)
      throw new ConfigError(
        file,
        `${at}.${k}`,
        k === "hub" ? "must be an http(s):// URL or a list of them" : "must be a non-empty string",
      );
  }
  if (v.token !== undefined && v.token_file !== undefined)
    throw new ConfigError(file, at, "give token or token_file, not both");
};
