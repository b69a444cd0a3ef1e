import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { createHub, type Hub, type HubOptions } from "../hub/server.ts";
import { openStore } from "../store/open.ts";
import type { Store } from "../store/store.ts";
import { FaultProxy } from "./proxy.ts";
import { StoreFaults } from "./store-faults.ts";
import { FrameTap } from "./tap.ts";

/** The kit's timings: short, so that a whole run takes well under a minute. */
export const KIT_TIMINGS = {
  /** The store's lease: an instruction not reported in progress is redelivered after it. */
  leaseMs: 1500,
  /** The hub's in-flight window per node (the inflight-window scenario relies on it). */
  maxInflight: 4,
  /** The hub's dead-peer interval: a silent connection is dropped within 1.25 × this. */
  pingIntervalMs: 1000,
  /** The heartbeat interval the hub gives nodes that do not ask for one. */
  heartbeatIntervalMs: 1000,
  sweepIntervalMs: 100,
  pollIntervalMs: 250,
} as const;

export interface Replica {
  readonly index: number;
  /** null while killed. */
  hub: Hub | null;
  /** The address the node under test dials: the fault proxy in front of the hub. */
  readonly proxy: FaultProxy;
  /** The hub's own port (kept across restarts, so the coordinator's URL stays valid). */
  port: number;
  readonly options: Partial<HubOptions>;
}

/**
 * The hubs the kit runs in-process for the node under test: replicas over one SQLite file in the kit's
 * directory, each behind a fault proxy, every node connection tapped (tap.ts) and every reply store recorded
 * (store-faults.ts). The coordinator talks to the hubs directly; only the node goes through the proxies.
 */
export class KitCluster {
  readonly token = randomBytes(16).toString("hex");
  readonly enrollToken = randomBytes(16).toString("hex");
  readonly tap = new FrameTap();
  readonly faults = new StoreFaults();
  readonly replicas: Replica[] = [];
  private readonly stores: Store[] = [];
  /** A store handle of its own: its writes reach the replicas as another replica's would. */
  admin!: Store;
  private readonly dbPath: string;

  private constructor(dir: string) {
    this.dbPath = join(dir, "hub.db");
  }

  static async start(dir: string, replicas = 2): Promise<KitCluster> {
    const c = new KitCluster(dir);
    c.admin = await c.openStore();
    for (let i = 0; i < replicas; i++) await c.addReplica({});
    return c;
  }

  private async openStore(): Promise<Store> {
    const s = await openStore(`sqlite:${this.dbPath}`, { leaseMs: KIT_TIMINGS.leaseMs, maxAttempts: 10 });
    this.stores.push(s);
    return s;
  }

  /** Starts one more replica (e.g. one that speaks other protocol versions) and returns it. */
  async addReplica(options: Partial<HubOptions> & Record<string, unknown>): Promise<Replica> {
    const store = this.faults.wrap(await this.openStore(), this.replicas.length);
    const index = this.replicas.length;
    const hub = this.createHub(store, options, index);
    const port = Number(new URL(await hub.listen()).port);
    const r: Replica = {
      index,
      hub,
      proxy: await FaultProxy.start(port),
      port,
      options: { ...options, store },
    };
    this.replicas.push(r);
    return r;
  }

  private createHub(store: Store, options: Partial<HubOptions>, index: number): Hub {
    const { leaseMs: _, ...t } = KIT_TIMINGS;
    const hub = createHub({
      ...t,
      token: this.token,
      enrollToken: this.enrollToken,
      metrics: false,
      dashboard: false,
      ...options,
      store,
    });
    this.tap.attach(hub, index);
    return hub;
  }

  /** The URLs the node under test is given (FLEETLINK_HUB): the proxies of the first `n` replicas. */
  nodeUrls(n = 2): string[] {
    return this.replicas.slice(0, n).map((r) => r.proxy.url);
  }

  /** The URLs the kit's coordinator uses: the hubs themselves. */
  get adminUrls(): string[] {
    return this.replicas.slice(0, 2).map((r) => `http://127.0.0.1:${r.port}`);
  }

  /** The replica this node's live session is on, if any. */
  replicaOf(nodeId: string): Replica | undefined {
    return this.replicas.find((r) => r.hub?.nodes.connectedIds().includes(nodeId));
  }

  /** Kills a replica as a crash would: its proxy resets every connection and refuses new ones, then it stops. */
  async kill(r: Replica): Promise<void> {
    r.proxy.down();
    const hub = r.hub;
    r.hub = null;
    await hub?.close();
  }

  /** Starts a killed replica again on the same port and lets the node reach it. */
  async restart(r: Replica): Promise<void> {
    if (r.hub) return;
    const hub = this.createHub(r.options.store!, r.options, r.index);
    await hub.listen({ port: r.port });
    r.hub = hub;
    r.proxy.up();
  }

  async close(): Promise<void> {
    for (const r of this.replicas) {
      await r.proxy.close();
      await r.hub?.close();
      r.hub = null;
    }
    for (const s of this.stores) await s.close();
  }
}
