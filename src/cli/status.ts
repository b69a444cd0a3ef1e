import { Command } from "commander";
import type { FleetNode } from "../coordinator/fleet.ts";
import { describeError } from "../protocol/errors.ts";
import { connection, withHub } from "./connection.ts";
import { ExitCode } from "./exit-codes.ts";
import { nodeState } from "./nodes.ts";
import { examples, fields, show, withJson } from "./output.ts";
import { CLI_VERSION } from "./version.ts";

interface Stats {
  store: {
    runs: Record<string, number>;
    nodes: Record<string, number>;
    instructions: Record<string, number>;
    replies: Record<string, number>;
    [k: string]: unknown;
  };
  hub: Record<string, unknown>;
}

export interface ReplicaHealth {
  url: string;
  /** /healthz answered. */
  live: boolean;
  /** /readyz answered 200: the replica reaches its store. */
  ready: boolean;
  error?: string;
}

/** /healthz and /readyz of one replica (no token needed), within 3 s. */
const probe = async (url: string): Promise<ReplicaHealth> => {
  const get = async (path: string) => {
    const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(3000) });
    const body = (await res.json().catch(() => ({}))) as { error?: string };
    return { ok: res.ok, error: body.error };
  };
  try {
    const live = await get("/healthz");
    const ready = await get("/readyz");
    return { url, live: live.ok, ready: ready.ok, ...(ready.error ? { error: ready.error } : {}) };
  } catch (e) {
    // fetch says only "fetch failed": the cause has the socket's code (ECONNREFUSED, ENOTFOUND…).
    const cause = (e as { cause?: unknown }).cause;
    return { url, live: false, ready: false, error: describeError(cause ?? e) };
  }
};

/** The hub's version, from its OpenAPI document (`info.version`) when /v1/stats does not give it. */
const hubVersion = async (url: string, token: string): Promise<string | null> => {
  try {
    const res = await fetch(`${url}/openapi.json`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(3000),
    });
    if (!res.ok) return null;
    const doc = (await res.json()) as { info?: { version?: unknown } };
    return typeof doc.info?.version === "string" ? doc.info.version : null;
  } catch {
    return null;
  }
};

const counts = (m: Record<string, number> | undefined) =>
  Object.entries(m ?? {})
    .map(([k, n]) => `${k} ${n}`)
    .join(", ") || "-";

/**
 * `fleetlink status`: a fleet summary in the manner of `rabbitmqctl status`, from each replica's /healthz and
 * /readyz and one replica's /v1/stats and /v1/nodes. Exit status 4 (unavailable) when no replica is ready.
 */
export const statusCommand = (): Command => {
  const cmd = withJson(
    withHub(new Command("status").description("Fleet summary: replicas, store, nodes, runs, in-flight.")),
  );
  examples(cmd, [
    "fleetlink status",
    "fleetlink status --hub http://10.0.0.1:7070,http://10.0.0.2:7070 --json",
  ]);
  return cmd.action(async (_o, c: Command) => {
    const { hubs, token, profile } = connection(c);
    const replicas = await Promise.all(hubs.map((h) => probe(h.replace(/\/$/, ""))));
    const { HubClient } = await import("../coordinator/http.ts");
    const client = new HubClient(hubs, token);
    let stats: Stats;
    let nodes: FleetNode[];
    try {
      [stats, { nodes }] = await Promise.all([
        client.request<Stats>("GET", "/v1/stats"),
        client.request<{ nodes: FleetNode[] }>("GET", "/v1/nodes"),
      ]);
    } finally {
      await client.close(0);
    }
    const byState: Record<string, number> = {};
    for (const n of nodes) byState[nodeState(n)] = (byState[nodeState(n)] ?? 0) + 1;
    const hub = stats.hub;
    const ready = replicas.find((r) => r.ready)?.url;
    const version = hub.version ?? (ready ? await hubVersion(ready, token) : null);
    const summary = {
      cli: CLI_VERSION,
      ...(profile ? { profile } : {}),
      replicas,
      hub: {
        ...hub,
        connectedNodes: hub.connectedNodes ?? null,
        runSubscribers: hub.runSubscribers ?? null,
        version,
        backend: (stats.store.backend as string | undefined) ?? null,
      },
      nodes: { total: nodes.length, byState },
      runs: stats.store.runs,
      instructions: stats.store.instructions,
      replies: stats.store.replies,
    };
    show(c, summary, (s) => {
      const known = new Set(["version", "backend", "connectedNodes", "runSubscribers"]);
      const extra = Object.entries(s.hub).filter(([k, v]) => !known.has(k) && typeof v !== "object");
      return fields([
        [
          "replicas",
          s.replicas
            .map(
              (r) =>
                `${r.url} ${r.ready ? "ready" : r.live ? `NOT READY (${r.error})` : `DOWN (${r.error})`}`,
            )
            .join("; "),
        ],
        ["hub version", s.hub.version ?? "(not reported)"],
        ["store", s.hub.backend ?? "(not reported)"],
        ["nodes", `${s.nodes.total} (${counts(s.nodes.byState)})`],
        ["runs", counts(s.runs)],
        ["instructions", `${counts(s.instructions)}; in flight (leased) ${s.instructions.leased ?? 0}`],
        ["replies", counts(s.replies)],
        [
          "this replica",
          `connected nodes ${s.hub.connectedNodes ?? "-"}, run streams ${s.hub.runSubscribers ?? "-"}`,
        ],
        ...extra.map(([k, v]): [string, unknown] => [k, v]),
        ["cli", `fleetlink ${s.cli}${s.profile ? ` (profile ${s.profile})` : ""}`],
      ]);
    });
    if (!replicas.some((r) => r.ready)) process.exitCode = ExitCode.unavailable;
  });
};
