// The first hour: a node started before its hub waits for it; a node whose identity the hub forgot says so.
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { createHub } from "../../src/hub/server.ts";
import { NodeAgent } from "../../src/node/agent.ts";
import type { AgentStatus } from "../../src/node/status.ts";
import { openStore } from "../../src/store/open.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { ENROLL_TOKEN, startFleet, TOKEN } from "../helpers/fleet.ts";

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });

describe("enrollment retries", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  });

  test("enroll - a node started before its hub retries, naming the URL and the cause, and comes online once the hub is up", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const agent = new NodeAgent({ hubs: [url], name: "early", enrollToken: ENROLL_TOKEN, handlers: {} });
    cleanups.push(() => agent.stop({ timeoutMs: 200 }));
    const seen: AgentStatus[] = [];
    void (async () => {
      for await (const s of agent.status()) seen.push(s);
    })();
    const started = agent.start();
    await expect
      .poll(() => seen.filter((s) => s.state === "enrolling" && s.error).length, { timeout: 5000 })
      .toBeGreaterThanOrEqual(2);
    const err = seen.find((s) => s.state === "enrolling" && s.error) as { error: string };
    expect(err.error).toContain(url);
    expect(err.error).toMatch(/ECONNREFUSED/);
    const store = await openStore("memory:");
    const hub = createHub({ store, token: TOKEN, enrollToken: ENROLL_TOKEN });
    await hub.listen({ port });
    cleanups.push(async () => {
      await hub.close();
      await store.close();
    });
    await started;
    expect(agent.state.state).toBe("online");
  });

  test("enroll - a wrong enrollment token is refused for good with the hub's reason, not retried", async () => {
    const f = await startFleet();
    cleanups.push(() => f.close());
    const agent = new NodeAgent({ hubs: [f.url], name: "wrong", enrollToken: "nope", handlers: {} });
    const e = await rejectsWith(agent.start(), "UNAUTHORIZED");
    expect(e.message).toContain(f.url);
  });

  test("identity - a hub that forgot the node (database reset): the agent stops in state rejected saying what to do, or re-enrolls with reenroll", async () => {
    const first = await startFleet();
    const keep = mkdtempSync(join(tmpdir(), "fleetlink-identity-"));
    cleanups.push(async () => rmSync(keep, { recursive: true, force: true }));
    const identityFile = join(keep, "id.json");
    const a = new NodeAgent({
      hubs: [first.url],
      name: "amnesia",
      enrollToken: ENROLL_TOKEN,
      identityFile,
      handlers: {},
    });
    await a.start();
    const oldId = a.nodeId;
    await a.stop();
    await first.close();

    const fresh = await startFleet();
    cleanups.push(() => fresh.close());
    const b = new NodeAgent({
      hubs: [fresh.url],
      name: "amnesia",
      enrollToken: ENROLL_TOKEN,
      identityFile,
      handlers: {},
    });
    const t0 = Date.now();
    const e = await rejectsWith(b.start(), "UNAUTHORIZED");
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(e.message).toMatch(/reenroll/);
    expect(e.message).toMatch(/the hub does not know this identity: was its database reset/);
    expect(e.message).toContain(identityFile);
    expect(b.state.state).toBe("rejected");

    const c = new NodeAgent({
      hubs: [fresh.url],
      name: "amnesia",
      enrollToken: ENROLL_TOKEN,
      identityFile,
      reenroll: true,
      handlers: {},
    });
    cleanups.push(() => c.stop({ timeoutMs: 200 }));
    await c.start();
    expect(c.nodeId).not.toBe(oldId);
    expect(c.state.state).toBe("online");
  });
});

describe("unregistered", () => {
  test("identity - a node an admin unregisters stops in state rejected saying so, not blaming a database reset", async () => {
    const f = await startFleet();
    try {
      const a = await f.node("gone", { ping: () => "pong" });
      const res = await fetch(`${f.url}/v1/nodes/${a.nodeId}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      expect(res.status).toBe(200);
      await expect.poll(() => a.state.state, { timeout: 10_000 }).toBe("rejected");
      const reason = (a.state as { reason?: string }).reason ?? "";
      expect(reason).toMatch(/an admin unregistered this node/);
      expect(reason).not.toMatch(/database/);
      expect(reason).toMatch(/--reenroll/);
    } finally {
      await f.close();
    }
  });
});

describe("shared identity", () => {
  test("identity - two agents on one identity do not replace each other in a tight loop; the status says why", async () => {
    const f = await startFleet();
    const keep = mkdtempSync(join(tmpdir(), "fleetlink-shared-"));
    const identityFile = join(keep, "id.json");
    const one = new NodeAgent({
      hubs: [f.url],
      name: "twin",
      enrollToken: ENROLL_TOKEN,
      identityFile,
      handlers: {},
    });
    await one.start();
    const two = new NodeAgent({ hubs: [f.url], name: "twin", identityFile, handlers: {} });
    const reasons: string[] = [];
    let onlines = 0;
    for (const a of [one, two])
      void (async () => {
        for await (const s of a.status()) {
          if (s.state === "online") onlines++;
          if (s.state === "offline") reasons.push(s.reason);
        }
      })();
    await two.start();
    await new Promise((r) => setTimeout(r, 3000));
    try {
      // Without the back-off the two replaced each other every few ms (hundreds of reconnects in 3 s).
      expect(onlines).toBeLessThan(10);
      expect(reasons.some((r) => /another process is connected as node/.test(r))).toBe(true);
    } finally {
      await Promise.all([one.stop({ timeoutMs: 200 }), two.stop({ timeoutMs: 200 })]);
      await f.close();
      rmSync(keep, { recursive: true, force: true });
    }
  });
});
