import type { OpStatus, RoleChange, Roles, TakeoverStatus } from "../protocol/checkpoint-types.ts";
import { FleetlinkError, invalid } from "../protocol/errors.ts";
import type { HubClient } from "./http.ts";

export interface CheckpointSummary {
  id: string;
  createdAt: number;
  nHosts: number;
  bytes: number;
}

type RunRef = string | { id: string };
const runId = (r: RunRef) => (typeof r === "string" ? r : r.id);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Fleet checkpoints through the hub: assign host roles, push, pull (non-blocking on the hosts), status, list. */
export class CheckpointClient {
  private readonly http: HubClient;

  constructor(http: HubClient) {
    this.http = http;
  }

  /**
   * Host k of the run is nodeIds[k]; standbys keep warm copies of a host and take over when it fails.
   * Resolves with the roles and `changes`: what this assignment changed, host by host (empty: nothing).
   */
  assign(
    run: RunRef,
    nodeIds: string[],
    standby: { hostIdx: number; nodeId: string }[] = [],
  ): Promise<Roles & { changes: RoleChange[] }> {
    return this.http
      .request<{ roles: Roles; changes: RoleChange[] }>("PUT", `/v1/runs/${runId(run)}/hosts`, {
        hosts: nodeIds,
        standby,
      })
      .then((r) => ({ ...r.roles, changes: r.changes }));
  }

  roles(run: RunRef): Promise<Roles | null> {
    return this.http
      .request<{ roles: Roles | null }>("GET", `/v1/runs/${runId(run)}/hosts`)
      .then((r) => r.roles);
  }

  /** Makes host k's first standby take over now. */
  async activate(run: RunRef, hostIdx: number): Promise<Roles> {
    if (!Number.isSafeInteger(hostIdx) || hostIdx < 0)
      throw invalid("hostIdx", `must be a non-negative integer, not ${hostIdx}`);
    return this.http
      .request<{ roles: Roles }>("POST", `/v1/runs/${runId(run)}/hosts/${hostIdx}/activate`)
      .then((r) => r.roles);
  }

  /** Pushes every host's state under one new checkpoint id; resolves with the final status (wait: false → at once). */
  async push(
    run: RunRef,
    opts: { wait?: boolean; timeoutMs?: number } = {},
  ): Promise<OpStatus & { id: string }> {
    const { id } = await this.http.request<{ id: string }>(
      "POST",
      `/v1/runs/${runId(run)}/checkpoints/push`,
      undefined,
      {
        retry: false,
      },
    );
    return this.settle(run, "push", id, opts);
  }

  /**
   * Restores every host from checkpoint `id` (default: the newest complete one): host k gets host k's part.
   * If host roles moved between live nodes since that checkpoint (e.g. two swapped), the hub refuses
   * (HOST_MISMATCH) unless `allowRoleChanges`.
   */
  async pull(
    run: RunRef,
    id = "latest",
    opts: { wait?: boolean; timeoutMs?: number; allowRoleChanges?: boolean } = {},
  ): Promise<OpStatus & { id: string }> {
    const r = await this.http.request<{ id: string }>(
      "POST",
      `/v1/runs/${runId(run)}/checkpoints/pull`,
      { id, ...(opts.allowRoleChanges ? { allowRoleChanges: true } : {}) },
      { retry: false },
    );
    return this.settle(run, "pull", r.id, opts);
  }

  /** Push and pull status, and standby takeovers of the current hosts (attempts, and why one gave up). */
  async status(run: RunRef): Promise<{ push: OpStatus; pull: OpStatus; takeover: TakeoverStatus[] }> {
    const base = `/v1/runs/${runId(run)}/checkpoints`;
    const [push, pull, takeover] = await Promise.all([
      this.http.request<OpStatus>("GET", `${base}/push_status`),
      this.http.request<OpStatus>("GET", `${base}/pull_status`),
      this.http.request<{ hosts: TakeoverStatus[] }>("GET", `${base}/takeover_status`),
    ]);
    return { push, pull, takeover: takeover.hosts };
  }

  async list(run: RunRef): Promise<CheckpointSummary[]> {
    return (
      await this.http.request<{ checkpoints: CheckpointSummary[] }>(
        "GET",
        `/v1/runs/${runId(run)}/checkpoints`,
      )
    ).checkpoints;
  }

  private async settle(
    run: RunRef,
    kind: "push" | "pull",
    id: string,
    opts: { wait?: boolean; timeoutMs?: number },
  ): Promise<OpStatus & { id: string }> {
    const deadline = Date.now() + (opts.timeoutMs ?? 600_000);
    for (;;) {
      const s = await this.http.request<OpStatus>("GET", `/v1/runs/${runId(run)}/checkpoints/${kind}_status`);
      if (opts.wait === false || (s.id === id && s.status !== "in_progress")) return { ...s, id };
      if (Date.now() > deadline)
        throw new FleetlinkError(
          "MESSAGE_EXPIRED",
          `${kind} ${id} still in progress after ${opts.timeoutMs ?? 600_000} ms (the hub goes on with it)`,
        );
      await sleep(100);
    }
  }
}
