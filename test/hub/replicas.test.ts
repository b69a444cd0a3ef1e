// Two hub replicas over one store: a coordinator on one replica reaches a node on the other, woken by the
// store's change feed (SQLite data_version, PostgreSQL LISTEN/NOTIFY), not by the safety poll.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { createHub, type Hub } from "../../src/hub/server.ts";
import { NodeAgent } from "../../src/node/agent.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";
import { describePg, dropSchema, pgSchemaUrl } from "../helpers/postgres.ts";

const TOKEN = "replica-token";
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const crossReplica = (name: string, makeUrl: () => { url: string; cleanup: () => Promise<void> }) => {
  test(`replicas - ${name}: a call pushed through replica A reaches a node on replica B within milliseconds`, async () => {
    const { url, cleanup } = makeUrl();
    cleanups.push(cleanup);
    const stores: Store[] = [await openStore(url), await openStore(url)];
    // A long safety poll, so only the change feed can explain a fast delivery.
    const hubs: Hub[] = stores.map((store) =>
      createHub({ store, token: TOKEN, enrollToken: `${TOKEN}-enroll`, pollIntervalMs: 60_000 }),
    );
    for (const [i, h] of hubs.entries()) cleanups.push(() => h.close().then(() => stores[i]!.close()));
    const [a, b] = await Promise.all(hubs.map((h) => h.listen()));
    const agent = new NodeAgent({
      hubs: [b!],
      name: "far",
      enrollToken: `${TOKEN}-enroll`,
      handlers: { echo: (p) => p },
    });
    await agent.start();
    cleanups.push(() => agent.stop());
    const fleet = await Fleet.connect({ hub: a!, token: TOKEN });
    cleanups.push(() => fleet.close());
    const run = await fleet.createRun();
    const cfg = run.configuration([agent.nodeId!]);
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      const r = await cfg.call("echo", i, { quorum: "all", timeoutMs: 5000 });
      times.push(performance.now() - t);
      expect(r.replies.get(agent.nodeId!)).toBe(i);
    }
    times.sort((x, y) => x - y);
    // Two cross-replica wake-ups per call; far below the 60 s poll.
    expect(times[10]!).toBeLessThan(500);
  }, 30_000);
};

describe("hub replicas", () => {
  crossReplica("sqlite", () => {
    const dir = mkdtempSync(join(tmpdir(), "fleetlink-rep-"));
    return {
      url: `sqlite:${join(dir, "fleet.db")}`,
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  });
  describePg("postgres", () => {
    crossReplica("postgres", () => {
      const { url, schema } = pgSchemaUrl("rep");
      return { url, cleanup: () => dropSchema(schema) };
    });
  });
});
