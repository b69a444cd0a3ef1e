import { afterEach, beforeEach } from "vitest";
import type { NodeRecord } from "../../src/protocol/types.ts";
import type { Store } from "../../src/store/store.ts";
import { type ManualClock, manualClock } from "../helpers/expect.ts";

export type StoreFactory = (opts: {
  clock: () => number;
  leaseMs: number;
  maxAttempts: number;
  maxPayloadBytes: number;
}) => Promise<{
  store: Store;
  cleanup: () => Promise<void>;
  /** Another handle on the same data, as a second replica would open it. */
  replica: () => Promise<Store>;
}>;

export const LEASE = 10_000;
export const bytes = (s: string) => new TextEncoder().encode(s);

export interface StoreContext {
  store: Store;
  clock: ManualClock;
  /** Opens a second handle on the same data; closed after the test. */
  replica: () => Promise<Store>;
  /** Registers a node and heartbeats it once. */
  onlineNode: (name?: string, interval?: number) => Promise<NodeRecord>;
}

/** A fresh store (and manual clock) per test, for the conformance files that share one factory. */
export const useStore = (factory: StoreFactory): StoreContext => {
  const ctx = {} as StoreContext;
  let cleanup: () => Promise<void>;
  let opened: Store[] = [];
  beforeEach(async () => {
    ctx.clock = manualClock();
    const made = await factory({ clock: ctx.clock, leaseMs: LEASE, maxAttempts: 3, maxPayloadBytes: 1024 });
    ctx.store = made.store;
    cleanup = made.cleanup;
    opened = [];
    ctx.replica = async () => {
      const s = await made.replica();
      if (s !== made.store) opened.push(s);
      return s;
    };
    ctx.onlineNode = async (name = "n", interval = 60_000) => {
      const n = await ctx.store.registerNode({ name, heartbeatIntervalMs: interval });
      return ctx.store.heartbeat(n.id);
    };
  });
  afterEach(async () => {
    for (const s of opened) await s.close();
    await ctx.store.close();
    await cleanup();
  });
  return ctx;
};
