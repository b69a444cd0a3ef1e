// Cancellation: an instruction that ends before its node replied (withdrawn, expired, a quorum met without it)
// reaches its running handler as an aborted ctx.signal, and whatever the handler returns then is never replied.
import { mkdtempSync, rmSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { IncompleteCallError } from "../../src/coordinator/errors.ts";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { createHub, type Hub } from "../../src/hub/server.ts";
import { NodeAgent } from "../../src/node/agent.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";
import { TOKEN as FLEET_TOKEN, startFleet, type TestFleet } from "../helpers/fleet.ts";
import { describePg, dropSchema, pgSchemaUrl } from "../helpers/postgres.ts";
import { startProxy } from "../helpers/proxy.ts";
import { codeOf, until, Watch } from "./cancel-helpers.ts";

const TOKEN = "cancel-token";
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const scrape = async (url: string, token: string): Promise<string> =>
  (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();

/** Withdraws through the given replica's HTTP route, as any coordinator could. */
const withdraw = async (url: string, runId: string, ids: string[], token: string) => {
  const res = await fetch(`${url}/v1/runs/${runId}/instructions/withdraw`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ ids }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { withdrawn: string[] };
};

/** A port nothing listens on now (for a replica that starts later, named in the node's hub list). */
const freePort = async (): Promise<number> => {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
};

const acrossReplicas = (name: string, makeUrl: () => { url: string; cleanup: () => Promise<void> }) => {
  test(`cancel - ${name}: a withdraw through the replica not holding the node's stream aborts ctx.signal within 500 ms; the late result is not replied`, async () => {
    const { url, cleanup } = makeUrl();
    cleanups.push(cleanup);
    const stores: Store[] = [await openStore(url), await openStore(url)];
    // A long safety poll: only the store's change feed can explain a fast cancel.
    const hubs: Hub[] = stores.map((store) =>
      createHub({ store, token: TOKEN, enrollToken: `${TOKEN}-enroll`, pollIntervalMs: 60_000 }),
    );
    for (const [i, h] of hubs.entries()) cleanups.push(() => h.close().then(() => stores[i]!.close()));
    const [a, b] = await Promise.all(hubs.map((h) => h.listen()));
    const watch = new Watch();
    const agent = new NodeAgent({
      hubs: [b!],
      name: "far",
      enrollToken: `${TOKEN}-enroll`,
      handlers: { slow: watch.cooperative() },
    });
    await agent.start();
    cleanups.push(() => agent.stop({ timeoutMs: 1000 }));
    const fleet = await Fleet.connect({ hub: a!, token: TOKEN });
    cleanups.push(() => fleet.close());
    const run = await fleet.createRun();
    const cfg = run.configuration([agent.nodeId!]);
    const delays: number[] = [];
    for (let i = 0; i < 3; i++) {
      const ac = new AbortController();
      const call = cfg
        .call("slow", i, { quorum: "all", timeoutMs: 20_000, signal: ac.signal })
        .catch((e) => e);
      await watch.started(i + 1);
      const id = [...watch.runs.keys()][i]!;
      const t0 = performance.now();
      // The call's abort withdraws its instruction through replica A (the coordinator's).
      ac.abort();
      expect(await call).toBeInstanceOf(IncompleteCallError);
      await watch.allAborted([id], 2000);
      const seen = watch.runs.get(id)!;
      delays.push(seen.abortedAt! - t0);
      expect(codeOf(seen.reason)).toBe("FLEETLINK_E_CANCELLED");
      // The handler returned "result after abort": never replied, so the one reply is the withdraw's.
      await new Promise((r) => setTimeout(r, 200));
      const replies = await stores[0]!.getReplies(run.id, [id]);
      expect(replies.map((r) => r.error?.code)).toEqual(["FLEETLINK_E_CANCELLED"]);
    }
    expect(Math.max(...delays)).toBeLessThan(500);
    // Counted by the replica that told the node (B), not by the one that withdrew.
    expect(await scrape(b!, TOKEN)).toMatch(
      /fleetlink_cancellations_total\{code="FLEETLINK_E_CANCELLED"\} 3/,
    );
    expect(await scrape(a!, TOKEN)).not.toMatch(
      /fleetlink_cancellations_total\{code="FLEETLINK_E_CANCELLED"\} [1-9]/,
    );
  }, 30_000);
};

const replicaStartedLater = (name: string, makeUrl: () => { url: string; cleanup: () => Promise<void> }) => {
  test(`cancel - ${name}: a replica started after the withdraw cancels it when the node, cut off from the replica that held it, says hello there`, async () => {
    const { url, cleanup } = makeUrl();
    cleanups.push(cleanup);
    const opts = { token: TOKEN, enrollToken: `${TOKEN}-enroll`, pollIntervalMs: 60_000 };
    const storeA = await openStore(url);
    const a = createHub({ ...opts, store: storeA });
    cleanups.push(() => a.close().then(() => storeA.close()));
    const aUrl = new URL(await a.listen());
    // The node reaches A through a proxy that is cut below: A keeps the stream (and the lease) and tells the
    // cancel into the void, as a replica whose node's link died unseen (or that crashed) would.
    const proxy = await startProxy({ host: aUrl.hostname, port: Number(aUrl.port) });
    cleanups.push(() => proxy.close());
    const bPort = await freePort();
    const watch = new Watch();
    const agent = new NodeAgent({
      hubs: [proxy.url, `http://127.0.0.1:${bPort}`],
      name: "moved",
      enrollToken: `${TOKEN}-enroll`,
      heartbeatIntervalMs: 1000,
      handlers: { slow: watch.cooperative(20_000) },
    });
    await agent.start();
    cleanups.push(() => agent.stop({ timeoutMs: 1000 }));
    const fleet = await Fleet.connect({ hub: aUrl.origin, token: TOKEN });
    cleanups.push(() => fleet.close());
    const run = await fleet.createRun();
    const pushed = await fetch(`${aUrl.origin}/v1/runs/${run.id}/instructions`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ items: [{ dst: agent.nodeId, method: "slow", payload: 1, ttlMs: 60_000 }] }),
    });
    expect(pushed.status).toBe(201);
    await watch.started();
    const [id] = [...watch.runs.keys()];
    proxy.set("blackhole");
    expect((await withdraw(aUrl.origin, run.id, [id!], TOKEN)).withdrawn).toEqual([id]);
    // B starts only now: the log entry was written before it existed, and no store change will come.
    await new Promise((r) => setTimeout(r, 200));
    const storeB = await openStore(url);
    const b = createHub({ ...opts, store: storeB });
    cleanups.push(() => b.close().then(() => storeB.close()));
    await b.listen({ port: bPort });
    await watch.allAborted([id!], 15_000);
    expect(codeOf(watch.runs.get(id!)!.reason)).toBe("FLEETLINK_E_CANCELLED");
    expect(await scrape(`http://127.0.0.1:${bPort}`, TOKEN)).toMatch(
      /fleetlink_cancellations_total\{code="FLEETLINK_E_CANCELLED"\} 1/,
    );
  }, 30_000);
};

describe("cancel across replicas", () => {
  acrossReplicas("sqlite", () => {
    const dir = mkdtempSync(join(tmpdir(), "fleetlink-cancel-"));
    return {
      url: `sqlite:${join(dir, "fleet.db")}`,
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  });
  replicaStartedLater("sqlite", () => {
    const dir = mkdtempSync(join(tmpdir(), "fleetlink-cancel-"));
    return {
      url: `sqlite:${join(dir, "fleet.db")}`,
      cleanup: async () => rmSync(dir, { recursive: true, force: true }),
    };
  });
  describePg("postgres", () => {
    acrossReplicas("postgres", () => {
      const { url, schema } = pgSchemaUrl("cancel");
      return { url, cleanup: () => dropSchema(schema) };
    });
    replicaStartedLater("postgres", () => {
      const { url, schema } = pgSchemaUrl("cancel_later");
      return { url, cleanup: () => dropSchema(schema) };
    });
  });
});

describe("cancel on one replica", () => {
  let f: TestFleet;
  const start = async () => {
    f = await startFleet();
    cleanups.push(() => f.close());
    return f;
  };

  test("cancel - TTL expiry of a running instruction aborts its signal with MESSAGE_EXPIRED", async () => {
    await start();
    const watch = new Watch();
    const node = await f.node("ttl", { slow: watch.cooperative() });
    const run = await (await f.fleet()).createRun();
    const t0 = performance.now();
    const err = await run
      .configuration([node.nodeId!])
      .call("slow", null, { quorum: "all", ttlMs: 300, timeoutMs: 5000 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(IncompleteCallError);
    const [id] = [...watch.runs.keys()];
    await watch.allAborted([id!], 2000);
    const seen = watch.runs.get(id!)!;
    expect(codeOf(seen.reason)).toBe("FLEETLINK_E_MESSAGE_EXPIRED");
    expect(seen.abortedAt! - t0).toBeLessThan(300 + 500);
  }, 15_000);

  test("cancel - a quorum of first over three slow nodes aborts the two others; only the first replies", async () => {
    await start();
    const watch = new Watch();
    const nodes = [
      await f.node("fast", { work: watch.quick(300) }),
      await f.node("slow-1", { work: watch.cooperative() }),
      await f.node("slow-2", { work: watch.cooperative() }),
    ];
    const run = await (await f.fleet()).createRun();
    const r = await run
      .configuration(nodes.map((n) => n.nodeId!))
      .call("work", "x", { quorum: "first", timeoutMs: 10_000 });
    const done = performance.now();
    expect([...r.replies.keys()]).toEqual([nodes[0]!.nodeId]);
    const ids = [...watch.runs.keys()];
    expect(ids).toHaveLength(3);
    const others = ids.filter((id) => watch.runs.get(id)!.kind === "cooperative");
    expect(others).toHaveLength(2);
    await watch.allAborted(others, 2000);
    for (const id of others) {
      expect(codeOf(watch.runs.get(id)!.reason)).toBe("FLEETLINK_E_CANCELLED");
      expect(watch.runs.get(id)!.abortedAt! - done).toBeLessThan(500);
    }
    await new Promise((res) => setTimeout(res, 200));
    const replies = await f.store.getReplies(run.id, ids);
    // One result (the first node's) and one CANCELLED each for the others: nothing from their late results.
    expect(replies.filter((x) => x.error === null)).toHaveLength(1);
    expect(replies.filter((x) => x.error?.code === "FLEETLINK_E_CANCELLED")).toHaveLength(2);
    expect(replies).toHaveLength(3);
  }, 20_000);

  test("cancel - a handler that ignores its signal runs on; its late result is dropped, never replied", async () => {
    await start();
    const watch = new Watch();
    const debug: string[] = [];
    const log = { debug: (_o: object, m?: string) => debug.push(m ?? ""), warn: () => {} };
    const node = await f.node("stubborn", { work: watch.stubborn(800) }, { log });
    const run = await (await f.fleet()).createRun();
    const ac = new AbortController();
    const call = run
      .configuration([node.nodeId!])
      .call("work", null, { quorum: "all", timeoutMs: 10_000, signal: ac.signal })
      .catch((e) => e);
    await watch.started();
    const [id] = [...watch.runs.keys()];
    ac.abort();
    await call;
    await watch.allAborted([id!], 1000);
    await until(() => debug.includes("result of a cancelled instruction dropped"), 3000, "the drop");
    await new Promise((r) => setTimeout(r, 200));
    const replies = await f.store.getReplies(run.id, [id!]);
    expect(replies.map((r) => r.error?.code)).toEqual(["FLEETLINK_E_CANCELLED"]);
    expect(debug).not.toContain("reply refused");
  }, 15_000);

  test("cancel - over the HTTP node API the cancel event rides the next poll", async () => {
    await start();
    const watch = new Watch();
    const node = await f.node("http", { slow: watch.cooperative() }, { transport: "http" });
    const run = await (await f.fleet()).createRun();
    const push = await fetch(`${f.url}/v1/runs/${run.id}/instructions`, {
      method: "POST",
      headers: { authorization: `Bearer ${FLEET_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ items: [{ dst: node.nodeId, method: "slow", payload: 1, ttlMs: 20_000 }] }),
    });
    expect(push.status).toBe(201);
    await watch.started();
    const [id] = [...watch.runs.keys()];
    const t0 = performance.now();
    expect((await withdraw(f.url, run.id, [id!], FLEET_TOKEN)).withdrawn).toEqual([id]);
    await watch.allAborted([id!], 2000);
    expect(watch.runs.get(id!)!.abortedAt! - t0).toBeLessThan(500);
    expect(codeOf(watch.runs.get(id!)!.reason)).toBe("FLEETLINK_E_CANCELLED");
    await new Promise((r) => setTimeout(r, 200));
    expect((await f.store.getReplies(run.id, [id!])).map((r) => r.error?.code)).toEqual([
      "FLEETLINK_E_CANCELLED",
    ]);
  }, 15_000);
});
