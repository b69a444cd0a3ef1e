import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { createHub, type Hub, type HubOptions } from "../../src/hub/server.ts";
import { type Handler, NodeAgent, type NodeAgentOptions } from "../../src/node/agent.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";

export const TOKEN = "test-token";
/** Nodes enroll with this; it may do nothing else. */
export const ENROLL_TOKEN = `${TOKEN}-enroll`;

/** An in-process hub on a fresh SQLite file, plus helpers to add nodes and a coordinator. */
export const startFleet = async (o: Partial<HubOptions> & { storeUrl?: string } = {}) => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-hub-"));
  const store: Store = o.store ?? (await openStore(o.storeUrl ?? `sqlite:${join(dir, "fleet.db")}`));
  const hub: Hub = createHub({ token: TOKEN, enrollToken: ENROLL_TOKEN, sweepIntervalMs: 50, ...o, store });
  const url = await hub.listen();
  const agents: NodeAgent[] = [];
  const fleets: Fleet[] = [];
  return {
    dir,
    store,
    hub,
    url,
    async node(
      name: string,
      handlers: Record<string, Handler>,
      extra: Partial<Omit<NodeAgentOptions, "name" | "handlers">> = {},
    ) {
      const a = new NodeAgent({
        enrollToken: ENROLL_TOKEN,
        ...extra,
        hubs: extra.hubs ?? [url],
        name,
        handlers,
        heartbeatIntervalMs: extra.heartbeatIntervalMs ?? 1000,
      });
      await a.start();
      agents.push(a);
      return a;
    },
    async fleet(hubs: string[] = [url]) {
      const f = await Fleet.connect({ hub: hubs, token: TOKEN });
      fleets.push(f);
      return f;
    },
    async close() {
      for (const f of fleets) await f.close();
      await Promise.all(agents.map((a) => a.stop({ timeoutMs: 1000 })));
      await hub.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
};
export type TestFleet = Awaited<ReturnType<typeof startFleet>>;
