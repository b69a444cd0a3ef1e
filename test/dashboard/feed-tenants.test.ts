// The dashboard feed per tenant, on a real hub (SQLite) with real agents over WebSockets: a tenant's token sees
// only its tenant's nodes, runs and checkpoints, down to the node ids in the replicas table; another tenant's run
// is 404 as if it did not exist; an unscoped token sees everything.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Snapshot } from "../../src/hub/dashboard/snapshot.ts";
import { startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

/** The first `snapshot` event of a feed (and the response), then the feed is closed. */
const firstSnapshot = async (url: string, token: string) => {
  const ac = new AbortController();
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
  if (!res.ok || !res.body) return { res, raw: "", snap: null };
  const timer = setTimeout(() => ac.abort(), 5000);
  let buf = "";
  try {
    for await (const chunk of res.body) {
      buf += Buffer.from(chunk).toString();
      const m = /event: snapshot\ndata: (.*)\n\n/.exec(buf);
      if (m) return { res, raw: m[1]!, snap: JSON.parse(m[1]!) as Snapshot };
    }
  } catch {
    // aborted
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  return { res, raw: "", snap: null };
};

describe("dashboard feed per tenant", () => {
  let f: TestFleet;
  const ids: Record<string, string> = {};
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const secrets: Record<string, string> = {};

  const post = async (token: string, path: string, body: unknown) => {
    const res = await fetch(`${f.url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(res.status, `${path}: ${await res.clone().text()}`).toBe(201);
    return (await res.json()) as Record<string, { id: string }> & { secret: string };
  };

  beforeAll(async () => {
    f = await startFleet();
    for (const t of ["team-a", "team-b"]) {
      const enroll = await post(TOKEN, "/v1/enroll-tokens", { tenant: t, label: `${t} nodes` });
      await f.node(
        `${t}-node`,
        {
          ping: () => "pong",
          wait: async () => {
            await gate;
            return "done";
          },
        },
        { enrollToken: enroll.secret },
      );
      ids[`run-${t}`] = (await post(TOKEN, "/v1/runs", { tenant: t })).run!.id;
      secrets[`reader-${t}`] = (await post(TOKEN, "/v1/tokens", { role: "reader", tenant: t })).secret;
    }
    secrets.metrics = (await post(TOKEN, "/v1/tokens", { role: "metrics" })).secret;
    secrets.reader = (await post(TOKEN, "/v1/tokens", { role: "reader" })).secret;
    for (const n of await f.store.listNodes()) ids[n.name] = n.id;
    // Both agents connected (so the replica's presence lists both node ids).
    for (let i = 0; (await f.store.listNodes({ status: "online" })).length < 2; i++) {
      if (i > 200) throw new Error("the two agents did not come online within 10 s");
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  afterAll(async () => {
    release();
    await f?.close();
  });

  it("feed - a tenant's reader sees only its tenant: nodes, runs, counts, replica node ids", async () => {
    await expect
      .poll(async () => (await firstSnapshot(`${f.url}/v1/events`, TOKEN)).snap?.replicas[0]?.nodes.length)
      .toBe(2);
    const { res, raw, snap } = await firstSnapshot(`${f.url}/v1/events`, secrets["reader-team-b"]!);
    expect(res.status).toBe(200);
    expect(snap!.tenant).toBe("team-b");
    expect(snap!.nodes.map((n) => n.name)).toEqual(["team-b-node"]);
    expect(snap!.nodes[0]!.tenant).toBe("team-b");
    expect(snap!.runs.map((r) => r.id)).toEqual([ids["run-team-b"]]);
    expect(snap!.fleet.online).toBe(1);
    expect(snap!.fleet.runs).toEqual({ pending: 1, running: 0, finished: 0 });
    expect(snap!.replicas).toHaveLength(1);
    expect(snap!.replicas[0]).toMatchObject({
      nodes: [ids["team-b-node"]],
      inflight: null,
      runStreams: null,
    });
    // Nothing of tenant A anywhere in the document.
    for (const k of ["team-a-node", "run-team-a"]) expect(raw).not.toContain(ids[k]);
    expect(raw).not.toContain("team-a");
  });

  it("feed - a node's in-flight count is shown on its row, and a tenant's feed names no other tenant's busy node", async () => {
    const res = await fetch(`${f.url}/v1/runs/${ids["run-team-a"]}/instructions`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ items: [{ dst: ids["team-a-node"], method: "wait", ttlMs: 60_000 }] }),
    });
    expect(res.status).toBe(201);
    const busy = async () =>
      (await firstSnapshot(`${f.url}/v1/events`, TOKEN)).snap?.nodes.find((n) => n.name === "team-a-node")
        ?.inflight;
    await expect.poll(busy, { timeout: 5000 }).toBe(1);
    const { snap: all } = await firstSnapshot(`${f.url}/v1/events`, TOKEN);
    expect(all!.nodes.find((n) => n.name === "team-b-node")!.inflight).toBe(0);
    const { raw } = await firstSnapshot(`${f.url}/v1/events`, secrets["reader-team-b"]!);
    expect(raw).not.toContain(ids["team-a-node"]);
    expect(raw).not.toContain("inflightByNode");
    release();
    await expect.poll(busy, { timeout: 5000 }).toBe(0);
  });

  it("feed - an unscoped token sees every tenant", async () => {
    for (const token of [TOKEN, secrets.reader!]) {
      const { snap } = await firstSnapshot(`${f.url}/v1/events`, token);
      expect(snap!.tenant).toBeNull();
      expect(snap!.nodes.map((n) => n.name).sort()).toEqual(["team-a-node", "team-b-node"]);
      expect(snap!.runs.map((r) => r.id).sort()).toEqual([ids["run-team-a"], ids["run-team-b"]].sort());
      expect(snap!.fleet.online).toBe(2);
      expect(snap!.replicas[0]!.inflight).toEqual(expect.any(Number));
    }
  });

  it("feed - another tenant's run is 404 RUN_NOT_FOUND, like an unknown one; its own opens", async () => {
    const other = await firstSnapshot(
      `${f.url}/v1/events?run=${ids["run-team-a"]}`,
      secrets["reader-team-b"]!,
    );
    expect(other.res.status).toBe(404);
    const unknown = await firstSnapshot(
      `${f.url}/v1/events?run=01939a5e-8c2a-7b4e-9f1d-3c5a7e9b2d41`,
      secrets["reader-team-b"]!,
    );
    expect(unknown.res.status).toBe(404);
    const bodies = [(await other.res.json()) as object, (await unknown.res.json()) as object];
    expect(bodies.map((b) => (b as { error: { code: string } }).error.code)).toEqual([
      "FLEETLINK_E_RUN_NOT_FOUND",
      "FLEETLINK_E_RUN_NOT_FOUND",
    ]);
    const own = await firstSnapshot(`${f.url}/v1/events?run=${ids["run-team-b"]}`, secrets["reader-team-b"]!);
    expect(own.res.status).toBe(200);
    expect(own.snap!.run!.run.id).toBe(ids["run-team-b"]);
    // The admin token opens either.
    const admin = await firstSnapshot(`${f.url}/v1/events?run=${ids["run-team-a"]}`, TOKEN);
    expect(admin.snap!.run!.run.id).toBe(ids["run-team-a"]);
  });

  it("feed - two tenants' feeds open at once each get their own snapshot", async () => {
    const [a, b] = await Promise.all([
      firstSnapshot(`${f.url}/v1/events`, secrets["reader-team-a"]!),
      firstSnapshot(`${f.url}/v1/events`, secrets["reader-team-b"]!),
    ]);
    expect(a.snap!.nodes.map((n) => n.name)).toEqual(["team-a-node"]);
    expect(b.snap!.nodes.map((n) => n.name)).toEqual(["team-b-node"]);
  });

  it("feed - checkpoints: a run's host roles are shown to its tenant only", async () => {
    const c = await startCheckpointFleet();
    try {
      const h0 = await c.node("h0");
      const run = await c.fleet.createRun();
      await c.fleet.checkpoints.assign(run, [h0.agent.nodeId!]);
      const reader = async (tenant: string) => {
        const res = await fetch(`${c.url}/v1/tokens`, {
          method: "POST",
          headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
          body: JSON.stringify({ role: "reader", tenant }),
        });
        return ((await res.json()) as { secret: string }).secret;
      };
      const own = await firstSnapshot(`${c.url}/v1/events`, await reader("default"));
      expect(own.snap!.checkpoints!.map((v) => v.runId)).toEqual([run.id]);
      const other = await firstSnapshot(`${c.url}/v1/events`, await reader("team-b"));
      expect(other.snap!.checkpoints).toEqual([]);
      expect(other.raw).not.toContain(run.id);
      expect(other.raw).not.toContain(h0.agent.nodeId!);
    } finally {
      await c.close();
    }
  });

  it("feed - a stored token revoked while its feed is open: the feed ends with a refused event within 2 s", async () => {
    const made = await post(TOKEN, "/v1/tokens", { role: "reader", tenant: "team-a" });
    const res = await fetch(`${f.url}/v1/events`, { headers: { authorization: `Bearer ${made.secret}` } });
    expect(res.status).toBe(200);
    let text = "";
    let revokedAt = 0;
    let endedAt = 0;
    const reading = (async () => {
      for await (const chunk of res.body!) {
        text += Buffer.from(chunk).toString();
        if (revokedAt === 0 && text.includes("event: snapshot")) {
          revokedAt = performance.now();
          const del = await fetch(`${f.url}/v1/tokens/${made.token!.id}`, {
            method: "DELETE",
            headers: { authorization: `Bearer ${TOKEN}` },
          });
          expect(del.status).toBe(200);
        }
      }
    })().catch(() => {});
    const bound = setTimeout(() => res.body?.cancel(), 10_000);
    await reading;
    endedAt = performance.now();
    clearTimeout(bound);
    expect(text.slice(-300)).toMatch(/event: refused\ndata: \{"status":401,"message":"token revoked"\}/);
    // The recheck runs every 2 s: revoked to ended within one round (plus slack for a busy machine).
    expect(endedAt - revokedAt).toBeLessThan(3000);
  });

  it("feed - metrics tokens may not read the feed (403 naming the roles); no token is 401", async () => {
    const m = await fetch(`${f.url}/v1/events`, { headers: { authorization: `Bearer ${secrets.metrics}` } });
    expect(m.status).toBe(403);
    expect(((await m.json()) as { error: { message: string } }).error.message).toMatch(/admin/);
    const none = await fetch(`${f.url}/v1/events`);
    expect(none.status).toBe(401);
  });
});
