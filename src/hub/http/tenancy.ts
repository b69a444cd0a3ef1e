import { FleetlinkError } from "../../protocol/errors.ts";
import { isId } from "../../protocol/ids.ts";
import { DEFAULT_TENANT } from "../../protocol/types.ts";
import type { Store } from "../../store/store.ts";
import type { Principal } from "./principal.ts";

/** Runs whose tenant is remembered per replica: a tenant never changes, so entries never go stale. */
const DEFAULT_CACHE = 10_000;

/** Word for word what the store says of a run that does not exist (no existence leak by the message). */
export const runNotFound = (id: string): FleetlinkError =>
  new FleetlinkError("RUN_NOT_FOUND", `no run ${id}`);
/** Word for word what the store says of a node that does not exist. */
export const nodeNotFound = (id: string, field = "nodeId"): FleetlinkError =>
  new FleetlinkError("NODE_NOT_FOUND", `no node ${id}`, { field });

/**
 * Tenant checks of the routes. A run's tenant is read once (getRun) and kept in a bounded LRU, so a scoped
 * coordinator's pushes cost no extra store round trip after the first; unscoped callers cost nothing at all.
 * Something of another tenant answers exactly like something that does not exist (no existence leak).
 */
export class RunTenants {
  private readonly cache = new Map<string, string>();
  private readonly store: Store;
  private readonly max: number;
  /** `max`: runs remembered. (Default: 10000) */
  constructor(store: Store, max = DEFAULT_CACHE) {
    this.store = store;
    this.max = max;
  }

  /** The run's tenant (RUN_NOT_FOUND if there is no such run). */
  async tenantOf(runId: string): Promise<string> {
    const hit = this.cache.get(runId);
    if (hit !== undefined) {
      // Refresh its place: the Map's order is the LRU order.
      this.cache.delete(runId);
      this.cache.set(runId, hit);
      return hit;
    }
    if (!isId(runId)) throw runNotFound(runId);
    const run = await this.store.getRun(runId);
    this.remember(runId, run.tenant);
    return run.tenant;
  }

  /** A run just created (its tenant is known without a read). */
  remember(runId: string, tenant: string): void {
    this.cache.set(runId, tenant);
    if (this.cache.size > this.max) this.cache.delete(this.cache.keys().next().value as string);
  }

  get size(): number {
    return this.cache.size;
  }

  /** RUN_NOT_FOUND unless `p` sees the run. */
  async check(p: Principal, runId: string): Promise<void> {
    if (p.tenant === null) return;
    if ((await this.tenantOf(runId)) !== p.tenant) throw runNotFound(runId);
  }

  /** NODE_NOT_FOUND unless `p` sees the node. */
  async checkNode(p: Principal, nodeId: string): Promise<void> {
    if (p.tenant === null) return;
    if (!isId(nodeId)) throw nodeNotFound(nodeId);
    const node = await this.store.getNode(nodeId);
    if (node.tenant !== p.tenant) throw nodeNotFound(nodeId);
  }

  /** NODE_NOT_FOUND naming `<field>[i]` for the first node id that is not a node of `tenant`. */
  async checkNodesOf(tenant: string, ids: readonly string[], field: string): Promise<void> {
    if (ids.length === 0) return;
    const mine = new Set((await this.store.listNodes({ tenant })).map((n) => n.id));
    for (const [i, id] of ids.entries()) if (!mine.has(id)) throw nodeNotFound(id, `${field}[${i}]`);
  }
}

/**
 * The tenant something new belongs to: a scoped principal's own (naming another is FORBIDDEN), else the one
 * asked for, else `fallback`.
 */
export const tenantFor = (
  p: Principal,
  asked: string | null | undefined,
  fallback: string | null = DEFAULT_TENANT,
): string | null => {
  if (p.tenant !== null) {
    if (asked !== undefined && asked !== p.tenant)
      throw new FleetlinkError(
        "FORBIDDEN",
        `this token is limited to tenant ${p.tenant}; it cannot act for ${asked === null ? "every tenant" : `tenant ${asked}`}`,
        { field: "tenant" },
      );
    return p.tenant;
  }
  return asked === undefined ? fallback : asked;
};
