import { Command } from "commander";
import type { EnrollToken } from "../coordinator/fleet.ts";
import { withClient, withHub } from "./connection.ts";
import { parseDuration, parseInteger } from "./flags.ts";
import { examples, show, table, when, withJson } from "./output.ts";

const tokenState = (t: EnrollToken, now = Date.now()): string =>
  t.revoked
    ? "revoked"
    : t.expiresAt !== null && t.expiresAt <= now
      ? "expired"
      : t.uses !== null && t.used >= t.uses
        ? "used up"
        : "valid";

/** `fleetlink tokens …`: enrollment tokens with an expiry and a use count, stored hashed in the hub's store. */
export const tokensCommand = (): Command => {
  const cmd = new Command("tokens").description("Create, list and revoke enrollment tokens.");

  const create = withJson(
    withHub(
      cmd
        .command("create")
        .description("Create an enrollment token; its secret is printed once (the hub keeps only a hash).")
        .option("--ttl <duration>", "valid for this long, e.g. 24h (default: no expiry)", (s) =>
          parseDuration(s, "--ttl"),
        )
        .option(
          "--uses <n>",
          "enrollments allowed (default: unlimited)",
          parseInteger("--uses", 1, 1_000_000),
        )
        .option("--label <text>", "what the token is for"),
    ),
  ).action(async (o, c: Command) => {
    const body = {
      ...(o.ttl === undefined ? {} : { ttlMs: o.ttl }),
      ...(o.uses === undefined ? {} : { uses: o.uses }),
      ...(o.label === undefined ? {} : { label: o.label }),
    };
    const r = await withClient(c, (h) =>
      h.request<{ token: EnrollToken; secret: string }>("POST", "/v1/enroll-tokens", body, { retry: false }),
    );
    // The secret alone on stdout, so `fleetlink tokens create > enroll.token` makes a token file.
    show(c, r, (v) => {
      process.stderr.write(
        `token ${v.token.id}${v.token.label ? ` (${v.token.label})` : ""}, expires ${when(v.token.expiresAt)}, uses ${v.token.uses ?? "unlimited"}\n`,
      );
      return v.secret;
    });
  });
  examples(create, [
    "(umask 077; fleetlink tokens create --ttl 24h --uses 10 --label rack-7 > enroll.token)",
    "fleetlink tokens create --ttl 1h --json",
  ]);

  const list = withJson(
    withHub(cmd.command("list").description("List enrollment tokens (never their secrets).")),
  ).action(async (_o, c: Command) => {
    const r = await withClient(c, (h) => h.request<{ tokens: EnrollToken[] }>("GET", "/v1/enroll-tokens"));
    show(c, r, (v) =>
      table(
        v.tokens,
        [
          ["ID", (t) => t.id],
          ["LABEL", (t) => t.label],
          ["STATE", (t) => tokenState(t)],
          ["USED", (t) => `${t.used}/${t.uses ?? "∞"}`],
          ["EXPIRES", (t) => when(t.expiresAt)],
          ["CREATED", (t) => when(t.createdAt)],
        ],
        "no enrollment tokens",
      ),
    );
  });
  examples(list, ["fleetlink tokens list", "fleetlink tokens list --json"]);

  const revoke = withJson(
    withHub(cmd.command("revoke <id>").description("Revoke an enrollment token at once, on every replica.")),
  ).action(async (id: string, _o, c: Command) => {
    const r = await withClient(c, (h) =>
      h.request<{ token: EnrollToken }>("DELETE", `/v1/enroll-tokens/${encodeURIComponent(id)}`),
    );
    show(c, r, (v) => `revoked ${v.token.id}${v.token.label ? ` (${v.token.label})` : ""}`);
  });
  examples(revoke, ["fleetlink tokens revoke 0193…"]);
  examples(cmd, [
    "fleetlink tokens create --ttl 24h --uses 10 > enroll.token",
    "fleetlink tokens list",
    "fleetlink tokens revoke 0193…",
  ]);
  return cmd;
};
