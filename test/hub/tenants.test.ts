// Tenants end to end: real node agents enrolled with tenant enrollment tokens, coordinators with tenant-scoped
// principal tokens through the SDK (HTTP and run streams). A tenant's calls reach its own nodes only; another
// tenant's runs and nodes are not found; the static admin token keeps today's single-team behaviour.
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { RECHECK_MS } from "../../src/hub/delivery/upgrade.ts";
import { NodeAgent } from "../../src/node/agent.ts";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { isFleetlinkError } from "../../src/protocol/errors.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

describe("tenants", () => {
  let f: TestFleet;
  const agents: NodeAgent[] = [];
  const fleets: Fleet[] = [];
  const ids: Record<string, string> = {};
  const tokens: Record<string, string> = {};
  let admin: Fleet;
  let a: Fleet;
  let b: Fleet;

  const agent = async (name: string, enrollToken: string, seen: string[]) => {
    const n = new NodeAgent({
      hubs: [f.url],
      enrollToken,
      name,
      heartbeatIntervalMs: 1000,
      handlers: {
        whoami: (p) => {
          seen.push(String(p));
          return name;
        },
      },
    });
    await n.start();
    agents.push(n);
    ids[name] = n.nodeId!;
    return n;
  };
  const seenA: string[] = [];
  const seenB: string[] = [];
  const seenDefault: string[] = [];

  beforeAll(async () => {
    f = await startFleet();
    admin = await Fleet.connect({ hub: f.url, token: TOKEN });
    fleets.push(admin);
    for (const t of ["a", "b"]) {
      const e = await admin.createEnrollToken({ tenant: t, label: `nodes of ${t}` });
      expect(e.token.tenant).toBe(t);
      await agent(`node-${t}`, e.secret, t === "a" ? seenA : seenB);
      tokens[t] = (await admin.createToken({ role: "coordinator", tenant: t, label: `coord ${t}` })).secret;
    }
    // The static enrollment token: the default tenant, as before tenants existed.
    await f.node("node-default", {
      whoami: (p) => {
        seenDefault.push(String(p));
        return "node-default";
      },
    });
    a = await Fleet.connect({ hub: f.url, token: tokens.a! });
    b = await Fleet.connect({ hub: f.url, token: tokens.b! });
    fleets.push(a, b);
  });
  afterAll(async () => {
    for (const x of fleets) await x.close();
    await Promise.all(agents.map((n) => n.stop({ timeoutMs: 1000 })));
    await f.close();
  });

  test("tenants - a scoped coordinator sees its own nodes and calls them over its run stream", async () => {
    expect((await a.whoami()).tenant).toBe("a");
    const nodes = (await a.nodes()).map((n) => n.id);
    expect(nodes).toEqual([ids["node-a"]]);
    const run = await a.createRun();
    const r = await run.call([ids["node-a"]!], "whoami", "from a", { quorum: "all", timeoutMs: 5000 });
    expect([...r.replies.values()]).toEqual(["node-a"]);
    expect(seenA).toContain("from a");
    await run.close();
  });

  test("tenants - a run of tenant a never reaches a node of tenant b, even with the admin token", async () => {
    const run = await a.createRun();
    const err = await run
      .call([ids["node-b"]!], "whoami", "from a to b", { quorum: "all", timeoutMs: 3000 })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).not.toBeNull();
    await run.close();
    // The admin token may make a run of tenant a; the store still refuses tenant b's node.
    const adminRun = await admin.createRun({ tenant: "a" });
    const push = await f.hub.app.inject({
      method: "POST",
      url: `/v1/runs/${adminRun.id}/instructions`,
      headers: { authorization: `Bearer ${TOKEN}` },
      payload: { items: [{ dst: ids["node-b"], method: "whoami", ttlMs: 1000 }] },
    });
    expect(push.json().error).toMatchObject({ code: "FLEETLINK_E_NODE_NOT_FOUND", field: "items[0].dst" });
    await adminRun.close();
    expect(seenB).not.toContain("from a to b");
  });

  test("tenants - another tenant's run is not found: reattaching, reading, opening its stream", async () => {
    const run = await a.createRun();
    const e = await b.run(run.id).then(
      () => null,
      (x: unknown) => x,
    );
    expect(isFleetlinkError(e, "RUN_NOT_FOUND")).toBe(true);
    const res = await fetch(`${f.url}/v1/runs/${run.id}/instructions`, {
      headers: { authorization: `Bearer ${tokens.b}` },
    });
    expect(res.status).toBe(404);
    await run.close();
  });

  test("tenants - the admin token keeps today's behaviour: default tenant runs reach default nodes", async () => {
    const run = await admin.createRun();
    expect((await f.store.getRun(run.id)).tenant).toBe("default");
    const r = await run.call([await defaultNode()], "whoami", "from admin", {
      quorum: "all",
      timeoutMs: 5000,
    });
    expect([...r.replies.values()]).toEqual(["node-default"]);
    // The admin token sees every tenant's nodes.
    expect((await admin.nodes()).length).toBe(3);
    await run.close();
  });

  const defaultNode = async () => (await admin.nodes()).find((n) => n.name === "node-default")!.id;

  test("tenants - revoking a coordinator's token refuses its next request at once", async () => {
    const { token, secret } = await admin.createToken({ role: "coordinator", tenant: "a" });
    const c = await Fleet.connect({ hub: f.url, token: secret });
    fleets.push(c);
    expect((await c.nodes()).length).toBe(1);
    const revoked = await admin.revokeToken(token.id);
    expect(revoked.revokedAt).not.toBeNull();
    const e = await c.nodes().then(
      () => null,
      (x: unknown) => x,
    );
    expect(isFleetlinkError(e, "UNAUTHORIZED")).toBe(true);
    expect((await admin.tokens()).find((t) => t.id === token.id)?.revokedAt).not.toBeNull();
  });

  test(`tenants - revoking a token closes its open run streams (close 4001) within RECHECK_MS (${RECHECK_MS} ms); another token's stream stays`, async () => {
    const run = await a.createRun();
    const { token, secret } = await admin.createToken({ role: "coordinator", tenant: "a" });
    const open = async (auth: string) => {
      const ws = new WebSocket(`${f.url.replace(/^http/, "ws")}/v1/runs/${run.id}/stream`, {
        headers: { authorization: `Bearer ${auth}` },
      });
      await once(ws, "open");
      const closed = new Promise<{ code: number; at: number }>((r) =>
        ws.once("close", (code) => r({ code, at: Date.now() })),
      );
      return { ws, closed };
    };
    const doomed = await open(secret);
    const kept = await open(tokens.a!);
    const revokedAt = Date.now();
    await admin.revokeToken(token.id);
    const { code, at } = await doomed.closed;
    expect(code).toBe(CloseCode.revoked);
    expect(at - revokedAt).toBeLessThan(RECHECK_MS + 1000);
    expect(kept.ws.readyState).toBe(WebSocket.OPEN);
    kept.ws.close();
    // And it cannot open a new one.
    const again = new WebSocket(`${f.url.replace(/^http/, "ws")}/v1/runs/${run.id}/stream`, {
      headers: { authorization: `Bearer ${secret}` },
    });
    const [, res] = (await once(again, "unexpected-response")) as [unknown, { statusCode: number }];
    expect(res.statusCode).toBe(401);
    await run.close();
  });
});

describe("tenants - run tenant cache", () => {
  test("tenants - a scoped coordinator's pushes read the run's tenant once, then from the cache", async () => {
    const { openStore } = await import("../../src/store/open.ts");
    const { createHub } = await import("../../src/hub/server.ts");
    const real = await openStore("memory:");
    let getRuns = 0;
    const store = new Proxy(real, {
      get(t, k, r) {
        if (k === "getRun") getRuns++;
        const v = Reflect.get(t, k, r);
        return typeof v === "function" ? v.bind(t) : v;
      },
    });
    const hub = createHub({ store, token: TOKEN, metrics: false, dashboard: false });
    try {
      const call = (method: string, url: string, auth: string, payload?: object) =>
        hub.app.inject({
          method: method as "GET",
          url,
          headers: { authorization: `Bearer ${auth}` },
          payload,
        });
      const tok = (await call("POST", "/v1/tokens", TOKEN, { role: "coordinator", tenant: "a" })).json()
        .secret;
      const run = (await call("POST", "/v1/runs", tok, {})).json().run.id as string;
      const node = await real.registerNode({ name: "n", heartbeatIntervalMs: 1000, tenant: "a" });
      getRuns = 0;
      for (let i = 0; i < 20; i++) {
        const r = await call("POST", `/v1/runs/${run}/instructions`, tok, {
          items: [{ dst: node.id, method: "m", ttlMs: 60_000 }],
        });
        expect(r.statusCode, r.body).toBe(201);
      }
      // The run was created here, so its tenant was known without any read.
      expect(getRuns).toBe(0);
      // Another replica reads it once.
      const other = createHub({ store, token: TOKEN, metrics: false, dashboard: false });
      for (let i = 0; i < 20; i++) {
        const r = await other.app.inject({
          method: "POST",
          url: `/v1/runs/${run}/instructions`,
          headers: { authorization: `Bearer ${tok}` },
          payload: { items: [{ dst: node.id, method: "m", ttlMs: 60_000 }] },
        });
        expect(r.statusCode, r.body).toBe(201);
      }
      expect(getRuns).toBe(1);
      await other.close();
    } finally {
      await hub.close();
      await real.close();
    }
  });
});
