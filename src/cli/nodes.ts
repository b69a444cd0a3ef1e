import { Command } from "commander";
import type { FleetNode } from "../coordinator/fleet.ts";
import type { HubClient } from "../coordinator/http.ts";
import { FleetlinkError } from "../protocol/errors.ts";
import { nearestName } from "../util/nearest.ts";
import { withClient, withHub } from "./connection.ts";
import { examples, fields, show, table, when, withJson } from "./output.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Last heartbeat: the hub stores `onlineUntil` = last heartbeat + 2 × interval. */
export const lastHeartbeat = (n: FleetNode): number | null =>
  n.onlineUntil === null ? null : n.onlineUntil - 2 * n.heartbeatIntervalMs;

/** What an operator wants to know first: online, offline, waiting for approval, gone. */
export const nodeState = (n: FleetNode): string =>
  n.status === "unregistered" ? "unregistered" : n.approved ? n.status : "pending approval";

/**
 * A node by id, or by name (the live node of that name, else the newest of that name): people type names,
 * scripts pass ids.
 */
export const resolveNode = async (c: HubClient, ref: string): Promise<FleetNode> => {
  if (UUID.test(ref))
    return (await c.request<{ node: FleetNode }>("GET", `/v1/nodes/${encodeURIComponent(ref)}`)).node;
  const { nodes } = await c.request<{ nodes: FleetNode[] }>("GET", "/v1/nodes");
  const found = byName(nodes, ref);
  if (!found)
    throw new FleetlinkError(
      "NODE_NOT_FOUND",
      `no node with id or name ${JSON.stringify(ref)}${didYouMean(ref, nodes)}`,
      {
        field: "node",
      },
    );
  return found;
};

/**
 * The node a name means: the live node of that name, else (unless `liveOnly`) the newest of that name. One rule
 * for every command that takes a node by name.
 */
export const byName = (
  nodes: readonly FleetNode[],
  name: string,
  liveOnly = false,
): FleetNode | undefined => {
  const named = nodes.filter((n) => n.name === name).sort((a, b) => b.createdAt - a.createdAt);
  return named.find((n) => n.status !== "unregistered") ?? (liveOnly ? undefined : named[0]);
};

/** `: did you mean worker-2?` for a mistyped name, from the live nodes' names; "" when none is near. */
export const didYouMean = (ref: string, nodes: readonly FleetNode[]): string => {
  const near = nearestName(
    ref,
    nodes.filter((n) => n.status !== "unregistered").map((n) => n.name),
  );
  return near ? `: did you mean ${near}?` : "";
};

/**
 * The node ids a flag's refs mean, in order: ids pass through (the hub checks them), names are looked up as
 * resolveNode does, with one listing for all of them. NODE_NOT_FOUND naming the flag for an unknown name.
 */
export const resolveNodeIds = async (
  c: HubClient,
  refs: readonly string[],
  flagOf: (i: number) => string,
): Promise<string[]> => {
  if (refs.every((r) => UUID.test(r))) return [...refs];
  const { nodes } = await c.request<{ nodes: FleetNode[] }>("GET", "/v1/nodes");
  return refs.map((ref, i) => {
    if (UUID.test(ref)) return ref;
    const found = byName(nodes, ref);
    const flag = flagOf(i);
    if (!found)
      throw new FleetlinkError(
        "NODE_NOT_FOUND",
        `${flag}: no node with id or name ${JSON.stringify(ref)}${didYouMean(ref, nodes)}`,
        {
          field: flag.replace(/^--/, ""),
        },
      );
    return found.id;
  });
};

/** The node's software as its hello named it, e.g. `fleetlink-ts/0.1.0 (p1)`; "-" if it named none. */
export const agentLabel = (n: FleetNode): string =>
  n.agent ? `${n.agent.name}/${n.agent.version} (p${n.agent.protocol})` : "-";

export const nodesTable = (nodes: FleetNode[]): string =>
  table(
    nodes,
    [
      ["ID", (n) => n.id],
      ["NAME", (n) => n.name],
      ["STATUS", nodeState],
      ["LAST HEARTBEAT", (n) => when(lastHeartbeat(n))],
      ["HEARTBEAT", (n) => `${n.heartbeatIntervalMs}ms`],
      ["ENROLLED", (n) => when(n.createdAt)],
      ["AGENT", agentLabel],
    ],
    "no nodes",
  );

const nodeFields = (n: FleetNode) =>
  fields([
    ["id", n.id],
    ["name", n.name],
    ["status", nodeState(n)],
    ["approved", n.approved],
    ["agent", agentLabel(n)],
    ["last heartbeat", when(lastHeartbeat(n))],
    ["online until", when(n.onlineUntil)],
    ["heartbeat interval", `${n.heartbeatIntervalMs} ms`],
    ["enrolled", when(n.createdAt)],
  ]);

/** `fleetlink nodes …`: list, show, approve (with `serve --enroll-approval manual`) and unregister nodes. */
export const nodesCommand = (): Command => {
  const cmd = new Command("nodes").description("List, show, approve and unregister nodes.");

  const list = withJson(
    withHub(cmd.command("list").description("Every node the hub knows, with its status.")),
  )
    .option("--status <status>", "only nodes of this status: online, offline, pending, unregistered")
    .action(async (o, c: Command) => {
      const want = o.status as string | undefined;
      if (
        want !== undefined &&
        !["online", "offline", "pending", "unregistered", "registered"].includes(want)
      )
        throw new FleetlinkError(
          "INVALID_ARGUMENT",
          `--status: ${JSON.stringify(want)} is not online, offline, pending or unregistered`,
          { field: "status" },
        );
      const { nodes } = await withClient(c, (h) => h.request<{ nodes: FleetNode[] }>("GET", "/v1/nodes"));
      const shown =
        want === undefined
          ? nodes
          : nodes.filter((n) =>
              want === "pending" ? !n.approved && n.status !== "unregistered" : n.status === want,
            );
      show(c, { nodes: shown }, (v) => nodesTable(v.nodes));
    });
  examples(list, ["fleetlink nodes list", "fleetlink nodes list --status online --json"]);

  const showCmd = withJson(
    withHub(cmd.command("show <node>").description("One node, by id or name.")),
  ).action(async (ref: string, _o, c: Command) => {
    const node = await withClient(c, (h) => resolveNode(h, ref));
    show(c, { node }, (v) => nodeFields(v.node));
  });
  examples(showCmd, ["fleetlink nodes show worker-1", "fleetlink nodes show 0193… --json"]);

  const approve = withJson(
    withHub(
      cmd.command("approve <node>").description("Let a pending node connect and take work (id or name)."),
    ),
  ).action(async (ref: string, _o, c: Command) => {
    const node = await withClient(c, async (h) => {
      const n = await resolveNode(h, ref);
      return (await h.request<{ node: FleetNode }>("POST", `/v1/nodes/${n.id}/approve`)).node;
    });
    show(c, { node }, (v) => `approved ${v.node.name} (${v.node.id})`);
  });
  examples(approve, ["fleetlink nodes approve worker-1"]);

  const unregister = withJson(
    withHub(
      cmd
        .command("unregister <node>")
        .alias("remove")
        .description(
          "Unregister a node (id or name): its credential stops working, its open instructions end NODE_UNAVAILABLE.",
        ),
    ),
  ).action(async (ref: string, _o, c: Command) => {
    const node = await withClient(c, async (h) => {
      const n = await resolveNode(h, ref);
      return (await h.request<{ node: FleetNode }>("DELETE", `/v1/nodes/${n.id}`)).node;
    });
    show(c, { node }, (v) => `unregistered ${v.node.name} (${v.node.id})`);
  });
  examples(unregister, ["fleetlink nodes unregister worker-1", "fleetlink nodes remove 0193…"]);
  examples(cmd, [
    "fleetlink nodes list",
    "fleetlink nodes show worker-1 --json",
    "fleetlink nodes approve worker-1",
    "fleetlink nodes unregister worker-1",
  ]);
  return cmd;
};
