import { type Command, InvalidArgumentError, Option } from "commander";
// Types only: the SDK is imported when a command connects, not when the CLI declares its options.
import type { Fleet } from "../coordinator/fleet.ts";
import type { HubClient } from "../coordinator/http.ts";
import { FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import { readSecret } from "./flags.ts";
import { configPath, loadProfile } from "./profiles.ts";

export const DEFAULT_HUB = "http://127.0.0.1:7070";

/** Where a command's hub and admin token came from: flag, environment, profile or default. */
export interface Connection {
  hubs: string[];
  token: string;
  /** Profile used for the hub or the token, if any. */
  profile?: string;
  /** Where the token came from, as a refusal names it: "--token-file ./admin.token", "FLEETLINK_TOKEN", … */
  tokenFrom: string;
}

/**
 * `--hub`, the admin token and `--profile`, added to every command that talks to a running hub. Defaults are
 * applied in `connection()` (not by commander) so that a profile can fill what no flag or variable gave.
 */
export const hubOptions = (): Option[] => [
  new Option("--hub <urls>", `hub replica URL(s), comma-separated (default: ${DEFAULT_HUB})`).env(
    "FLEETLINK_HUB",
  ),
  new Option("--token <token>", "admin token (visible in ps: prefer --token-file)").env("FLEETLINK_TOKEN"),
  new Option("--token-file <file>", "read the admin token from this file (mode 600)").env(
    "FLEETLINK_TOKEN_FILE",
  ),
  new Option("--profile <name>", "profile of the config file (FLEETLINK_CONFIG)").env("FLEETLINK_PROFILE"),
];

export const withHub = (c: Command): Command => {
  for (const opt of hubOptions()) c.addOption(opt);
  return c;
};

const rank = { cli: 0, env: 1 } as Record<string, number>;

/**
 * Hub URLs as given (`--hub`, a profile's `hubs`), comma-separated: each must be an http:// or https:// URL.
 * Without a scheme, `127.0.0.1:7070` would read as the scheme `127.0.0.1:` and fail later as "unreachable": a
 * usage error instead, naming the flag and the fix.
 */
export const parseHubs = (list: string, flag = "--hub"): string[] =>
  list
    .split(",")
    .map((h) => h.trim())
    .filter(Boolean)
    .map((h) => {
      let ok = false;
      try {
        const u = new URL(h);
        ok = (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
      } catch {
        ok = false;
      }
      if (!ok)
        throw new InvalidArgumentError(
          `${flag}: ${JSON.stringify(h.slice(0, 200))} is not an http:// or https:// URL (did you mean http://${h.replace(/^[a-z]+:\/\//i, "").slice(0, 200)}?)`,
        );
      return h;
    });

/**
 * The hub and token of a command, by precedence flag > environment variable > profile (`--profile`, else the
 * config file's `default_profile`) > default. Of the token and token file, the one given with the higher
 * precedence wins (a `--token-file` flag beats `FLEETLINK_TOKEN`).
 */
export const connection = (cmd: Command): Connection => {
  const o = cmd.opts() as { hub?: string; token?: string; tokenFile?: string; profile?: string };
  const src = (k: string) => rank[cmd.getOptionValueSource(k) ?? ""] ?? 9;
  const needsProfile = o.hub === undefined || (o.token === undefined && o.tokenFile === undefined);
  const profile = needsProfile || o.profile !== undefined ? loadProfile(o.profile) : undefined;
  const hubs = parseHubs(o.hub ?? profile?.hubs?.join(",") ?? DEFAULT_HUB);
  let token: string | undefined;
  let tokenFrom = "";
  const named = (k: "token" | "tokenFile", env: string, file?: string) =>
    cmd.getOptionValueSource(k) === "env" ? env : k === "token" ? "--token" : `--token-file ${file}`;
  if (o.token !== undefined || o.tokenFile !== undefined) {
    const fileFirst = o.tokenFile !== undefined && (o.token === undefined || src("tokenFile") < src("token"));
    const same = o.token !== undefined && o.tokenFile !== undefined && src("token") === src("tokenFile");
    token = same
      ? readSecret(o.token, o.tokenFile, "token")
      : fileFirst
        ? readSecret(undefined, o.tokenFile, "token")
        : o.token;
    tokenFrom = fileFirst
      ? named("tokenFile", `FLEETLINK_TOKEN_FILE (${o.tokenFile})`, o.tokenFile)
      : named("token", "FLEETLINK_TOKEN");
  } else if (profile) {
    token = profile.token ?? readSecret(undefined, profile.tokenFile, "token");
    tokenFrom = `profile ${profile.name} in ${configPath()}`;
  }
  if (!token)
    throw new InvalidArgumentError(
      `the admin token is needed: --token-file, --token, FLEETLINK_TOKEN(_FILE) or a profile in ${configPath()}`,
    );
  return { hubs, token, tokenFrom, ...(profile ? { profile: profile.name } : {}) };
};

/** A refused token (401) says which token it was, so the fix is not a guess between flags, files and profiles. */
const sayWhereTheTokenCameFrom =
  (from: string) =>
  (e: unknown): never => {
    if (from && isFleetlinkError(e, "UNAUTHORIZED"))
      throw new FleetlinkError("UNAUTHORIZED", `${e.message} (the token came from ${from})`, { cause: e });
    throw e;
  };

/** Runs `fn` with an HTTP client of the command's hub, and closes the client's connections after. */
export const withClient = async <T>(cmd: Command, fn: (c: HubClient) => Promise<T>): Promise<T> => {
  const { hubs, token, tokenFrom } = connection(cmd);
  const { HubClient } = await import("../coordinator/http.ts");
  const client = new HubClient(hubs, token);
  try {
    return await fn(client).catch(sayWhereTheTokenCameFrom(tokenFrom));
  } finally {
    await client.close(0);
  }
};

/** Runs `fn` with a Fleet (coordinator SDK) of the command's hub, closed after. */
export const withFleet = async <T>(cmd: Command, fn: (f: Fleet) => Promise<T>): Promise<T> => {
  const { hubs, token, tokenFrom } = connection(cmd);
  const { Fleet } = await import("../coordinator/fleet.ts");
  const fleet = await Fleet.connect({ hub: hubs, token }).catch(sayWhereTheTokenCameFrom(tokenFrom));
  try {
    return await fn(fleet).catch(sayWhereTheTokenCameFrom(tokenFrom));
  } finally {
    await fleet.close();
  }
};
