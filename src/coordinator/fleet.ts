import type { NodeRecord, Run as RunRecord } from "../protocol/types.ts";
import { type Logger, silentLogger } from "../stream/channel.ts";
import { CheckpointClient } from "./checkpoints.ts";
import { HubClient } from "./http.ts";
import { RunHandle } from "./run.ts";

export interface FleetOptions {
  /** One hub URL or several replicas. */
  hub: string | string[];
  /** The coordinator token the hub was started with. */
  token: string;
  log?: Logger;
}

export type FleetNode = Omit<NodeRecord, "credentialHash">;
/** An enrollment token as the hub lists it (never its secret). */
export interface EnrollToken {
  id: string;
  label: string | null;
  createdAt: number;
  expiresAt: number | null;
  uses: number | null;
  used: number;
  revoked: boolean;
}

/** The coordinator's entry point: runs, nodes, and through runs the quorum calls and broadcasts. */
export class Fleet {
  readonly http: HubClient;
  private readonly log: Logger;
  private readonly runs = new Set<RunHandle>();
  /** Fleet checkpoints: host roles, push, pull, status, list. */
  readonly checkpoints: CheckpointClient;

  private constructor(http: HubClient, log: Logger) {
    this.http = http;
    this.log = log;
    this.checkpoints = new CheckpointClient(http);
  }

  static async connect(o: FleetOptions): Promise<Fleet> {
    const fleet = new Fleet(
      new HubClient(Array.isArray(o.hub) ? o.hub : [o.hub], o.token),
      o.log ?? silentLogger,
    );
    await fleet.http.request("GET", "/v1/stats");
    return fleet;
  }

  /** Creates a run and opens its reply stream. */
  async createRun(): Promise<RunHandle> {
    const { run } = await this.http.request<{ run: RunRecord }>("POST", "/v1/runs", undefined, {
      retry: false,
    });
    return this.open(run);
  }

  /** Re-attaches to an existing run (e.g. after a coordinator restart). */
  async run(id: string): Promise<RunHandle> {
    const { run } = await this.http.request<{ run: RunRecord }>("GET", `/v1/runs/${id}`);
    return this.open(run);
  }

  private async open(run: RunRecord): Promise<RunHandle> {
    const h = new RunHandle(run, this.http, this.log);
    this.runs.add(h);
    await h.ready();
    return h;
  }

  /**
   * Nodes that can take work now (online and approved), unless asked otherwise: `{ status }` filters by
   * status, `{ all: true }` returns every node the hub knows (offline, pending and unregistered ones too).
   */
  async nodes(opts: { status?: FleetNode["status"]; all?: boolean } = {}): Promise<FleetNode[]> {
    const { nodes } = await this.http.request<{ nodes: FleetNode[] }>("GET", "/v1/nodes");
    if (opts.all) return nodes;
    if (opts.status) return nodes.filter((n) => n.status === opts.status);
    return nodes.filter((n) => n.status === "online" && n.approved);
  }

  async unregister(nodeId: string): Promise<void> {
    await this.http.request("DELETE", `/v1/nodes/${nodeId}`);
  }

  /** Lets a pending node (hub started with `enrollApproval: "manual"`) connect and take work. */
  async approve(nodeId: string): Promise<FleetNode> {
    return (await this.http.request<{ node: FleetNode }>("POST", `/v1/nodes/${nodeId}/approve`)).node;
  }

  /** Creates an enrollment token; `secret` is what a node enrolls with, shown only here. */
  async createEnrollToken(opts: { ttlMs?: number; uses?: number; label?: string } = {}): Promise<{
    token: EnrollToken;
    secret: string;
  }> {
    return this.http.request("POST", "/v1/enroll-tokens", opts, { retry: false });
  }

  async enrollTokens(): Promise<EnrollToken[]> {
    return (await this.http.request<{ tokens: EnrollToken[] }>("GET", "/v1/enroll-tokens")).tokens;
  }

  async revokeEnrollToken(id: string): Promise<EnrollToken> {
    return (await this.http.request<{ token: EnrollToken }>("DELETE", `/v1/enroll-tokens/${id}`)).token;
  }

  async close(): Promise<void> {
    for (const r of this.runs) await r.close();
    this.runs.clear();
  }
}
