import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import Fastify from "fastify";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerDashboard } from "../../src/hub/dashboard/dashboard.ts";
import { Feeds } from "../../src/hub/dashboard/feed.ts";
import type { Snapshot } from "../../src/hub/dashboard/snapshot.ts";
import { createHub } from "../../src/hub/server.ts";
import { openStore } from "../../src/store/open.ts";
import { startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

const repo = fileURLToPath(new URL("../../", import.meta.url));
const auth = { authorization: `Bearer ${TOKEN}` };

/** Reads SSE events from a feed for `ms`, then closes it. */
const readFeed = async (url: string, ms: number, headers = auth) => {
  const ac = new AbortController();
  const res = await fetch(url, { headers, signal: ac.signal });
  const events: { event: string; data: string }[] = [];
  if (!res.ok || !res.body) return { res, events };
  const timer = setTimeout(() => ac.abort(), ms);
  let buf = "";
  try {
    for await (const chunk of res.body) {
      buf += Buffer.from(chunk).toString();
      let end = buf.indexOf("\n\n");
      while (end >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data) events.push({ event, data });
        end = buf.indexOf("\n\n");
      }
    }
  } catch {
    // aborted
  } finally {
    clearTimeout(timer);
  }
  return { res, events };
};

describe("dashboard routes and live feed", () => {
  let f: TestFleet;
  beforeAll(async () => {
    // The page and its assets: built here unless `npm run build:web` did it already.
    if (!existsSync(join(repo, "web", "dist", "index.html"))) {
      const { build } = await import("vite");
      await build({ configFile: join(repo, "web", "vite.config.ts"), logLevel: "error" });
    }
    f = await startFleet();
  });
  afterAll(() => f?.close());

  it("dashboard - GET / serves the page, hashed assets are cached for a year, other paths still 404 as JSON", async () => {
    const page = await fetch(`${f.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(page.headers.get("cache-control")).toBe("no-cache");
    const html = await page.text();
    const asset = /src="\/assets\/([^"]+\.js)"/.exec(html)?.[1];
    expect(asset).toBeDefined();
    const js = await fetch(`${f.url}/assets/${asset}`);
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toContain("text/javascript");
    expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    for (const path of ["/assets/nope.js", "/assets/..%2F..%2Fpackage.json", "/no-such-page"]) {
      const r = await fetch(`${f.url}${path}`);
      expect(r.status, path).toBe(404);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe(
        "FLEETLINK_E_ROUTE_NOT_FOUND",
      );
    }
  });

  it("dashboard - a missing bundle is a 503 page naming npm run build:web", async () => {
    const store = await openStore("memory:");
    const app = Fastify();
    const empty = mkdtempSync(join(tmpdir(), "fleetlink-web-"));
    registerDashboard(app, {
      store,
      access: { store, token: TOKEN, enrollToken: undefined },
      replica: "r1",
      nodes: { connectedIds: () => [], inflight: 0 },
      runs: { subscribers: 0 },
      checkpoints: undefined,
      log: pino({ level: "silent" }),
      webRoot: empty,
    });
    try {
      const r = await app.inject({ method: "GET", url: "/" });
      expect(r.statusCode).toBe(503);
      expect(r.body).toContain("npm run build:web");
    } finally {
      await app.close();
      await store.close();
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it("dashboard - a hub with dashboard: false serves no page and no feed", async () => {
    const g = await startFleet({ dashboard: false });
    try {
      expect((await fetch(`${g.url}/`)).status).toBe(404);
      expect((await fetch(`${g.url}/v1/events`, { headers: auth })).status).toBe(404);
    } finally {
      await g.close();
    }
  });

  it("feed - only the admin token opens it; a bad or unknown run is refused naming it", async () => {
    const events = `${f.url}/v1/events`;
    expect((await fetch(events)).status).toBe(401);
    expect((await fetch(events, { headers: { authorization: "Bearer nope" } })).status).toBe(401);
    expect((await fetch(events, { headers: { authorization: `Bearer ${ENROLL_TOKEN}` } })).status).toBe(403);
    const bad = await fetch(`${events}?run=x`, { headers: auth });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { field: string } }).error.field).toContain("run");
    const unknown = await fetch(`${events}?run=01a235af-ad76-7157-9033-b9b271b99712`, { headers: auth });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe(
      "FLEETLINK_E_RUN_NOT_FOUND",
    );
  });

  it("feed - a snapshot on connect, then updates as work happens, at most ~4 per second", async () => {
    const node = await f.store.registerNode({ name: "busy", heartbeatIntervalMs: 60_000 });
    const run = await f.store.createRun();
    const reading = readFeed(`${f.url}/v1/events?run=${run.id}`, 1500);
    await new Promise((r) => setTimeout(r, 200));
    // 40 separate pushes in ~1 s: each is a store change; the feed folds them.
    for (let i = 0; i < 40; i++) {
      await f.store.pushInstructions(run.id, [
        { dst: node.id, method: "m", ttlMs: 60_000, groupId: `g${i}`, holdWhileOffline: true },
      ]);
      await new Promise((r) => setTimeout(r, 25));
    }
    const { res, events } = await reading;
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const snaps = events.filter((e) => e.event === "snapshot").map((e) => JSON.parse(e.data) as Snapshot);
    expect(snaps.length).toBeGreaterThanOrEqual(2);
    expect(snaps.length).toBeLessThanOrEqual(8); // 1.5 s at ≤ 4/s, plus the first
    expect(snaps[0]!.nodes.map((n) => n.name)).toContain("busy");
    const last = snaps.at(-1)!;
    expect(last.run?.run.id).toBe(run.id);
    expect(last.run!.calls.length).toBeGreaterThan(snaps[0]!.run!.calls.length);
    expect(last.run!.calls[0]!.nodes).toEqual([{ nodeId: node.id, name: "busy", state: "pending" }]);
    expect(last.runs.find((r) => r.id === run.id)?.open).toBe(last.run!.calls.length);
  });

  it("feed - replicas see each other: a node connected to replica B is shown on B in replica A's feed", async () => {
    const storeB = await openStore(`sqlite:${join(f.dir, "fleet.db")}`);
    const b = createHub({ store: storeB, token: TOKEN, enrollToken: ENROLL_TOKEN, sweepIntervalMs: 50 });
    const last = async () => {
      // Long enough for the first snapshot (sent within the feed's 250 ms interval).
      const { events } = await readFeed(`${f.url}/v1/events`, 700);
      return JSON.parse(events.find((e) => e.event === "snapshot")!.data) as Snapshot;
    };
    try {
      await f.node("on-b", {}, { hubs: [await b.listen()] });
      await expect
        .poll(async () => {
          const s = await last();
          return {
            replicas: s.replicas.map((r) => r.id).sort(),
            on: s.nodes.find((n) => n.name === "on-b")?.replica,
          };
        })
        .toEqual({ replicas: [f.hub.id, b.id].sort(), on: b.id });
    } finally {
      await b.close();
      await storeB.close();
    }
    // A replica that closed says so: it leaves the list at once, not after the silence window.
    expect((await last()).replicas.map((r) => r.id)).toEqual([f.hub.id]);
  });

  it("feed - checkpoints: host roles with standbys and a push host by host, fleet-wide and in the run", async () => {
    const c = await startCheckpointFleet();
    try {
      const [h0, h1, spare] = await Promise.all(["h0", "h1", "spare"].map((n) => c.node(n)));
      const run = await c.fleet.createRun();
      await c.fleet.checkpoints.assign(
        run,
        [h0!.agent.nodeId!, h1!.agent.nodeId!],
        [{ hostIdx: 1, nodeId: spare!.agent.nodeId! }],
      );
      const pushed = await c.fleet.checkpoints.push(run);
      expect(pushed.status).toBe("ok");
      const { events } = await readFeed(`${c.url}/v1/events?run=${run.id}`, 700);
      const s = JSON.parse(events.find((e) => e.event === "snapshot")!.data) as Snapshot;
      const view = {
        runId: run.id,
        roles: {
          runId: run.id,
          nHosts: 2,
          hosts: [
            { hostIdx: 0, nodeId: h0!.agent.nodeId, standby: [] },
            { hostIdx: 1, nodeId: h1!.agent.nodeId, standby: [spare!.agent.nodeId] },
          ],
        },
        push: expect.objectContaining({
          status: "ok",
          id: pushed.id,
          hosts: [expect.objectContaining({ status: "ok" }), expect.objectContaining({ status: "ok" })],
        }),
        pull: { status: "not_requested", hosts: [] },
        takeovers: [],
      };
      expect(s.checkpoints).toEqual([view]);
      expect(s.run?.checkpoint).toEqual(view);
    } finally {
      await c.close();
    }
  });

  it("feed - at most 32 at once per replica; the next is refused with RATE_LIMITED until one closes", async () => {
    const open = await Promise.all(
      Array.from({ length: 32 }, async () => {
        const ac = new AbortController();
        const res = await fetch(`${f.url}/v1/events`, { headers: auth, signal: ac.signal });
        expect(res.status).toBe(200);
        return ac;
      }),
    );
    const refused = await fetch(`${f.url}/v1/events`, { headers: auth });
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe(
      "FLEETLINK_E_RATE_LIMITED",
    );
    for (const ac of open) ac.abort();
    await expect
      .poll(async () => {
        const { res } = await readFeed(`${f.url}/v1/events`, 50);
        return res.status;
      })
      .toBe(200);
  });

  it("feed - a client that does not read is dropped once its buffer is over the limit", async () => {
    let ticks = 0;
    const feeds = new Feeds({
      source: {
        base: async () => ({ at: ticks++, filler: "x".repeat(10_000), n: ticks }),
        run: async () => null,
      },
      log: pino({ level: "silent" }),
      minIntervalMs: 10,
      maxBufferedBytes: 64 * 1024,
    });
    // A real stream whose peer never takes anything: every write stays buffered.
    const stalled = new Writable({ highWaterMark: 1024, write: () => {} });
    const reading = new Writable({ write: (_c, _e, done) => done() });
    feeds.open(stalled, null);
    feeds.open(reading, null);
    try {
      for (let i = 0; i < 20 && !stalled.destroyed; i++) {
        feeds.changed();
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(stalled.destroyed).toBe(true);
      expect(reading.destroyed).toBe(false);
      expect(feeds.size).toBe(1);
    } finally {
      feeds.close();
    }
  });
});
