import { Command, Option } from "commander";
import type { EnrollToken, PrincipalToken } from "../coordinator/fleet.ts";
import { invalid, isFleetlinkError } from "../protocol/errors.ts";
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

const principalState = (t: PrincipalToken, now = Date.now()): string =>
  t.revokedAt !== null ? "revoked" : t.expiresAt !== null && t.expiresAt <= now ? "expired" : "valid";

/** One row of `tokens list`: an enrollment token (role "enroll") or a principal token. */
type Row = {
  id: string;
  label: string | null;
  state: string;
  used: string;
  role: string;
  tenant: string | null;
  expiresAt: number | null;
  createdAt: number;
};

const ROLES = ["enroll", "admin", "coordinator", "reader", "metrics"] as const;

/**
 * `fleetlink tokens …`: enrollment tokens (an expiry and a use count) and principal tokens (a role: admin,
 * coordinator, reader or metrics, optionally one tenant), stored hashed in the hub's store.
 */
export const tokensCommand = (): Command => {
  const cmd = new Command("tokens").description(
    "Create, list and revoke enrollment tokens and principal tokens (roles, tenants).",
  );

  const create = withJson(
    withHub(
      cmd
        .command("create")
        .description(
          "Create a token; its secret is printed once (the hub keeps only a hash). Without --role (or with " +
            "--role enroll): an enrollment token for nodes; with --role admin|coordinator|reader|metrics: a " +
            "principal token for people and services.",
        )
        .addOption(new Option("--role <role>", "what the token may do (default: enroll)").choices([...ROLES]))
        .option(
          "--tenant <tenant>",
          "the tenant it acts in (enrollment: the nodes' tenant; default: your token's, else default / every tenant)",
        )
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
    const common = {
      ...(o.ttl === undefined ? {} : { ttlMs: o.ttl }),
      ...(o.label === undefined ? {} : { label: o.label }),
      ...(o.tenant === undefined ? {} : { tenant: o.tenant }),
    };
    if (o.role !== undefined && o.role !== "enroll") {
      if (o.uses !== undefined)
        throw invalid("--uses", "applies to enrollment tokens only (no --role, or --role enroll)");
      const p = await withClient(c, (h) =>
        h.request<{ token: PrincipalToken; secret: string }>(
          "POST",
          "/v1/tokens",
          { role: o.role, ...common },
          { retry: false },
        ),
      );
      show(c, p, (v) => {
        process.stderr.write(
          `token ${v.token.id}${v.token.label ? ` (${v.token.label})` : ""}, role ${v.token.role}, tenant ${v.token.tenant ?? "(every tenant)"}, expires ${when(v.token.expiresAt)}\n`,
        );
        return v.secret;
      });
      return;
    }
    const body = { ...common, ...(o.uses === undefined ? {} : { uses: o.uses }) };
    const r = await withClient(c, (h) =>
      h.request<{ token: EnrollToken; secret: string }>("POST", "/v1/enroll-tokens", body, { retry: false }),
    );
    // The secret alone on stdout, so `fleetlink tokens create > enroll.token` makes a token file.
    show(c, r, (v) => {
      process.stderr.write(
        `token ${v.token.id}${v.token.label ? ` (${v.token.label})` : ""}, tenant ${v.token.tenant}, expires ${when(v.token.expiresAt)}, uses ${v.token.uses ?? "unlimited"}\n`,
      );
      return v.secret;
    });
  });
  examples(create, [
    "(umask 077; fleetlink tokens create --ttl 24h --uses 10 --label rack-7 > enroll.token)",
    "fleetlink tokens create --ttl 1h --json",
    "fleetlink tokens create --role reader --ttl 30d --tenant team-a --label grafana > reader.token",
    "fleetlink tokens create --role metrics --label prometheus",
  ]);

  const list = withJson(
    withHub(
      cmd
        .command("list")
        .description(
          "List enrollment tokens and principal tokens, with role and tenant (never their secrets).",
        ),
    ),
  ).action(async (_o, c: Command) => {
    const r = await withClient(c, async (h) => ({
      tokens: (await h.request<{ tokens: EnrollToken[] }>("GET", "/v1/enroll-tokens")).tokens,
      principals: (await h.request<{ tokens: PrincipalToken[] }>("GET", "/v1/tokens")).tokens,
    }));
    const rows: Row[] = [
      ...r.tokens.map((t) => ({
        ...t,
        state: tokenState(t),
        used: `${t.used}/${t.uses ?? "∞"}`,
        role: "enroll",
      })),
      ...r.principals.map((t) => ({ ...t, state: principalState(t), used: "-" })),
    ];
    show(c, r, () =>
      table(
        rows,
        [
          ["ID", (t) => t.id],
          ["LABEL", (t) => t.label],
          ["STATE", (t) => t.state],
          ["USED", (t) => t.used],
          ["ROLE", (t) => t.role],
          ["TENANT", (t) => t.tenant ?? "*"],
          ["EXPIRES", (t) => when(t.expiresAt)],
          ["CREATED", (t) => when(t.createdAt)],
        ],
        "no tokens",
      ),
    );
  });
  examples(list, ["fleetlink tokens list", "fleetlink tokens list --json"]);

  const revoke = withJson(
    withHub(
      cmd
        .command("revoke <id>")
        .description("Revoke an enrollment or principal token at once, on every replica."),
    ),
  ).action(async (id: string, _o, c: Command) => {
    const path = encodeURIComponent(id);
    // A principal token first; an id that is none is tried as an enrollment token.
    const r = await withClient(c, (h) =>
      h
        .request<{ token: EnrollToken | PrincipalToken }>("DELETE", `/v1/tokens/${path}`)
        .catch((e: unknown) => {
          if (!isFleetlinkError(e, "TOKEN_NOT_FOUND")) throw e;
          return h.request<{ token: EnrollToken }>("DELETE", `/v1/enroll-tokens/${path}`);
        }),
    );
    show(c, r, (v) => `revoked ${v.token.id}${v.token.label ? ` (${v.token.label})` : ""}`);
  });
  examples(revoke, ["fleetlink tokens revoke 0193…"]);
  examples(cmd, [
    "fleetlink tokens create --ttl 24h --uses 10 > enroll.token",
    "fleetlink tokens create --role coordinator --tenant team-a --ttl 90d > team-a.token",
    "fleetlink tokens list",
    "fleetlink tokens revoke 0193…",
  ]);
  return cmd;
};
