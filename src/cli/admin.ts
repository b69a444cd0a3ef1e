import { Command } from "commander";
import { HubClient } from "../coordinator/http.ts";
import { hubOptions, out, parseDuration, parseInteger, readSecret } from "./flags.ts";

const client = (o: { hub: string; token?: string; tokenFile?: string }): HubClient => {
  const token = readSecret(o.token, o.tokenFile, "token");
  if (!token) throw new Error("the admin token is needed: --token, --token-file or FLEETLINK_TOKEN");
  return new HubClient(String(o.hub).split(","), token);
};

const withHub = (c: Command): Command => {
  for (const opt of hubOptions()) c.addOption(opt);
  return c;
};

/** `fleetlink tokens …`: enrollment tokens with an expiry and a use count, stored hashed in the hub's store. */
export const tokensCommand = (): Command => {
  const cmd = new Command("tokens").description("Create, list and revoke enrollment tokens.");
  withHub(
    cmd
      .command("create")
      .description("Create an enrollment token (its secret is printed once).")
      .option("--ttl <duration>", "valid for this long, e.g. 24h", (s) => parseDuration(s, "--ttl"))
      .option("--uses <n>", "number of enrollments allowed", parseInteger("--uses", 1, 1_000_000))
      .option("--label <text>", "what the token is for"),
  ).action(async (o) => {
    const body = {
      ...(o.ttl === undefined ? {} : { ttlMs: o.ttl }),
      ...(o.uses === undefined ? {} : { uses: o.uses }),
      ...(o.label === undefined ? {} : { label: o.label }),
    };
    out(await client(o).request("POST", "/v1/enroll-tokens", body, { retry: false }));
  });
  withHub(cmd.command("list").description("List enrollment tokens (never their secrets).")).action(
    async (o) => out(await client(o).request("GET", "/v1/enroll-tokens")),
  );
  withHub(
    cmd.command("revoke <id>").description("Revoke an enrollment token at once, on every replica."),
  ).action(async (id: string, o) =>
    out(await client(o).request("DELETE", `/v1/enroll-tokens/${encodeURIComponent(id)}`)),
  );
  return cmd;
};

/** `fleetlink nodes …`: list, approve (with `serve --enroll-approval manual`) and remove nodes. */
export const nodesCommand = (): Command => {
  const cmd = new Command("nodes").description("List, approve and remove nodes.");
  withHub(cmd.command("list").description("Every node the hub knows, with its status.")).action(async (o) =>
    out(await client(o).request("GET", "/v1/nodes")),
  );
  withHub(cmd.command("approve <id>").description("Let a pending node connect and take work.")).action(
    async (id: string, o) =>
      out(await client(o).request("POST", `/v1/nodes/${encodeURIComponent(id)}/approve`, undefined)),
  );
  withHub(cmd.command("remove <id>").description("Unregister a node: its credential stops working.")).action(
    async (id: string, o) => out(await client(o).request("DELETE", `/v1/nodes/${encodeURIComponent(id)}`)),
  );
  return cmd;
};
