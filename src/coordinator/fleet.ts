import { BlobTransfers } from "../blob/client.ts";
import { type BlobMode, checkBlobOptions } from "../blob/codec.ts";
import { DEFAULT_INLINE_BYTES } from "../protocol/blobs.ts";
import type { NodeRecord, Role, Run as RunRecord } from "../protocol/types.ts";
import { type Logger, silentLogger } from "../stream/channel.ts";
import { CheckpointClient } from "./checkpoints.ts";
import { HubClient } from "./http.ts";
import { NodeNames } from "./names.ts";
import { RunHandle, type RunHandleOptions } from "./run.ts";

export interface FleetOptions {
  /** One hub URL or several replicas. */
  hub: string | string[];
  /**
   * The hub's admin token, or a principal token `flt_<id>.<secret>` (role admin or coordinator to drive runs,
   * reader to read only; a tenant-scoped one sees and makes only its tenant's runs and nodes).
   */
  token: string;
  log?: Logger;
  /** How long one HTTP attempt may take before the next replica is tried. (Default: 5000) */
  requestTimeoutMs?: number;
  /** How often each run's reply stream is pinged; see RunHandleOptions. (Default: 2000) */
  pingIntervalMs?: number;
  /** How often open calls read their replies back while a reply stream is down. (Default: 250) */
  recoveryPollMs?: number;
  /** How long after a lost reply stream the fallback poll goes on. (Default: 30000) */
  staleStreamMs?: number;
  /**
   * How blobs in results reach the user: `"bytes"`, a Buffer in memory (downloaded before the result is
   * handed over), or `"lazy"`, a FleetBlob handle to stream or save. (Default: "bytes")
   */
  blobs?: BlobMode;
  /** Binary data up to this many bytes travels inline in payloads (base64); larger as blobs. (Default: 262144) */
  inlineBytes?: number;
  /** Directory of the downloaded-blob cache, for one process at a time. (Default: a temp dir removed at close) */
  blobCacheDir?: string;
  /** Bytes the blob cache keeps before evicting the least recently used. (Default: 4 GiB) */
  blobCacheBytes?: number;
}

export type FleetNode = Omit<NodeRecord, "credentialHash">;
/** An enrollment token as the hub lists it (never its secret). */
export interface EnrollToken {
  id: string;
  /** The tenant nodes enrolled with it join. */
  tenant: string;
  label: string | null;
  createdAt: number;
  expiresAt: number | null;
  uses: number | null;
  used: number;
  revoked: boolean;
}

/** A principal token as the hub lists it (never its secret). */
export interface PrincipalToken {
  id: string;
  label: string | null;
  role: Role;
  /** The one tenant it acts in; null: every tenant. */
  tenant: string | null;
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
}

/** Who the hub takes this fleet's token for (`GET /v1/whoami`). */
export interface Whoami {
  id: string;
  label: string | null;
  role: string;
  tenant: string | null;
}

/** The coordinator's entry point: runs, nodes, and through runs the quorum calls and broadcasts. */
export class Fleet {
  readonly http: HubClient;
  private readonly log: Logger;
  private readonly handles = new Set<RunHandle>();
  private readonly runOptions: RunHandleOptions;
  /** Fleet checkpoints: host roles, push, pull, status, list. */
  readonly checkpoints: CheckpointClient;
  /** Node names by id, learnt from listings, that every run's results and errors report. */
  readonly names: NodeNames;

  private constructor(http: HubClient, log: Logger, runOptions: RunHandleOptions) {
    this.http = http;
    this.log = log;
    this.names = new NodeNames(() => this.nodes({ all: true }));
    this.runOptions = { ...runOptions, names: this.names };
    this.checkpoints = new CheckpointClient(http);
  }

  static async connect(o: FleetOptions): Promise<Fleet> {
    checkBlobOptions(o);
    const fleet = new Fleet(
      new HubClient(Array.isArray(o.hub) ? o.hub : [o.hub], o.token, {
        requestTimeoutMs: o.requestTimeoutMs,
      }),
      o.log ?? silentLogger,
      {
        pingIntervalMs: o.pingIntervalMs,
        recoveryPollMs: o.recoveryPollMs,
        staleStreamMs: o.staleStreamMs,
        blobs: {
          mode: o.blobs ?? "bytes",
          transfers: new BlobTransfers({
            inlineBytes: o.inlineBytes ?? DEFAULT_INLINE_BYTES,
            cacheDir: o.blobCacheDir,
            cacheBytes: o.blobCacheBytes,
          }),
        },
      },
    );
    await fleet.http.request("GET", "/v1/stats");
    return fleet;
  }

  /**
   * Creates a run and opens its reply stream. `tenant`: the run's tenant, whose nodes alone it reaches (an
   * unscoped token may name any; a scoped one only its own). (Default: the token's tenant, else "default")
   */
  async createRun(opts: { tenant?: string } = {}): Promise<RunHandle> {
    const body = opts.tenant === undefined ? undefined : { tenant: opts.tenant };
    const { run } = await this.http.request<{ run: RunRecord }>("POST", "/v1/runs", body, {
      retry: false,
    });
    return this.open(run);
  }

  /** Re-attaches to an existing run (e.g. after a coordinator restart). */
  async run(id: string): Promise<RunHandle> {
    const { run } = await this.http.request<{ run: RunRecord }>("GET", `/v1/runs/${id}`);
    return this.open(run);
  }

  /** The run handles opened and not yet closed (a closed handle leaves this set). */
  get runs(): ReadonlySet<RunHandle> {
    return this.handles;
  }

  private async open(run: RunRecord): Promise<RunHandle> {
    const h = new RunHandle(run, this.http, this.log, {
      ...this.runOptions,
      onClose: (r) => this.handles.delete(r),
    });
    this.handles.add(h);
    // Waits for the reply stream, but not forever: until it connects, calls read their replies back.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      h.ready(),
      new Promise<void>((r) => {
        timer = setTimeout(r, this.http.requestTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    return h;
  }

  /**
   * Nodes that can take work now (online and approved), unless asked otherwise: `{ status }` filters by
   * status, `{ all: true }` returns every node the hub knows (offline, pending and unregistered ones too).
   */
  async nodes(opts: { status?: FleetNode["status"]; all?: boolean } = {}): Promise<FleetNode[]> {
    const { nodes } = await this.http.request<{ nodes: FleetNode[] }>("GET", "/v1/nodes");
    this.names.learn(nodes);
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

  /**
   * Creates an enrollment token; `secret` is what a node enrolls with, shown only here. Nodes join `tenant`.
   * (Default: the token's tenant, else "default")
   */
  async createEnrollToken(
    opts: { ttlMs?: number; uses?: number; label?: string; tenant?: string } = {},
  ): Promise<{
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

  /**
   * Creates a principal token (admins only): `secret` (`flt_<id>.<secret>`) is the bearer token, shown only here.
   * `tenant`: the one tenant it acts in, null for every tenant. (Default: the creating token's tenant, null for
   * an unscoped one)
   */
  async createToken(opts: { role: Role; tenant?: string | null; label?: string; ttlMs?: number }): Promise<{
    token: PrincipalToken;
    secret: string;
  }> {
    return this.http.request("POST", "/v1/tokens", opts, { retry: false });
  }

  /** Principal tokens, newest first (a tenant-scoped admin sees its tenant's only). */
  async tokens(): Promise<PrincipalToken[]> {
    return (await this.http.request<{ tokens: PrincipalToken[] }>("GET", "/v1/tokens")).tokens;
  }

  /** Revokes a principal token at once, on every replica (idempotent). */
  async revokeToken(id: string): Promise<PrincipalToken> {
    return (await this.http.request<{ token: PrincipalToken }>("DELETE", `/v1/tokens/${id}`)).token;
  }

  /** Who the hub takes this fleet's token for: id, role and tenant. */
  async whoami(): Promise<Whoami> {
    return (await this.http.request<{ principal: Whoami }>("GET", "/v1/whoami")).principal;
  }

  async close(): Promise<void> {
    for (const r of [...this.handles]) await r.close();
    await this.http.close();
    this.runOptions.blobs?.transfers.close();
  }
}
