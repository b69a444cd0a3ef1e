import { readFileSync } from "node:fs";
import { Writable } from "node:stream";
import pino from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, test } from "vitest";
import { newId } from "../../src/protocol/ids.ts";
import { createStoreMetrics, instrumentStore } from "../../src/store/instrumented.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";
import { startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

const SCRAPE_TOKEN = "scrape-only-token";

/** Prometheus text format → series ("name{labels}") to value, plus each metric's TYPE. */
const parse = (text: string) => {
  const series = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) types.set(t[1]!, t[2]!);
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    series.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return { series, types };
};
type Scrape = ReturnType<typeof parse>;

const scrape = async (f: { url: string }, token = TOKEN): Promise<Scrape> => {
  const res = await fetch(`${f.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
  return parse(await res.text());
};
const v = (s: Scrape, key: string): number => s.series.get(key) ?? 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Scrapes until `ok` holds (sweeps and reply streams run on their own timers), at most 5 s. */
const scrapeUntil = async (f: TestFleet, ok: (s: Scrape) => boolean): Promise<Scrape> => {
  const until = Date.now() + 5000;
  for (;;) {
    const s = await scrape(f);
    if (ok(s) || Date.now() > until) return s;
    await sleep(50);
  }
};

describe("metrics - /metrics", () => {
  let f: TestFleet;
  afterEach(async () => {
    await f?.close();
  });

  test("metrics - series move by what calls, an error reply and an expiry did", async () => {
    f = await startFleet({ metricsToken: SCRAPE_TOKEN });
    let slowStarted!: () => void;
    const started = new Promise<void>((r) => {
      slowStarted = r;
    });
    const a = await f.node("a", {
      echo: (p) => p,
      fail: () => {
        throw new Error("boom");
      },
      slow: async () => {
        slowStarted();
        await sleep(700);
        return "late";
      },
    });
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const cfg = run.configuration([a.nodeId!]);
    const replica = `{replica="${f.hub.id}"}`;

    const before = await scrape(f);
    expect(v(before, `fleetlink_connected_nodes${replica}`)).toBe(1);
    expect(v(before, `fleetlink_inflight_instructions${replica}`)).toBe(0);

    for (let i = 0; i < 3; i++) await cfg.call("echo", i, { quorum: "all", timeoutMs: 5000 });
    await cfg.call("fail", null, { quorum: "all", timeoutMs: 5000 }).catch(() => {});
    // Its TTL ends it (the sweep's MESSAGE_EXPIRED), well before the call's deadline would withdraw it.
    const expiring = cfg.call("slow", null, { quorum: "all", ttlMs: 300, timeoutMs: 5000 }).catch((e) => e);
    await started;
    const during = await scrape(f);
    expect(v(during, `fleetlink_inflight_instructions${replica}`)).toBe(1);
    // The coordinator's reply stream for the run.
    expect(v(during, `fleetlink_run_streams${replica}`)).toBe(1);
    expect(await expiring).toBeInstanceOf(Error);

    const expired = 'fleetlink_replies_stored_total{outcome="FLEETLINK_E_MESSAGE_EXPIRED"}';
    const after = await scrapeUntil(f, (s) => v(s, expired) - v(before, expired) >= 1);
    const d = (key: string) => v(after, key) - v(before, key);
    expect(d("fleetlink_instructions_pushed_total")).toBe(5);
    expect(d("fleetlink_instructions_claimed_total")).toBe(5);
    expect(d('fleetlink_replies_stored_total{outcome="ok"}')).toBe(3);
    expect(d('fleetlink_replies_stored_total{outcome="FLEETLINK_E_HANDLER_FAILED"}')).toBe(1);
    expect(d(expired)).toBe(1);
    expect(d("fleetlink_sweep_replies_total")).toBe(1);
    expect(d("fleetlink_redeliveries_total")).toBe(0);
    // Node replies only (3 ok + 1 handler error); the expiry was made by the sweep.
    expect(d("fleetlink_reply_latency_seconds_count")).toBe(4);
    expect(d('fleetlink_reply_latency_seconds_bucket{le="+Inf"}')).toBe(4);
    // Pushes go to the store in group-commit batches (one per burst; these five came one at a time).
    expect(d('fleetlink_store_operation_seconds_count{operation="pushBatch",backend="sqlite"}')).toBe(5);
    expect(d('fleetlink_store_operation_seconds_count{operation="sweep",backend="sqlite"}')).toBeGreaterThan(
      0,
    );
    expect(d("fleetlink_sweep_duration_seconds_count")).toBeGreaterThan(0);
    const runs = ["pending", "running", "finished"].map((st) =>
      v(after, `fleetlink_store_runs{status="${st}"}`),
    );
    expect(runs.reduce((x, y) => x + y)).toBe(1);
    expect(v(after, 'fleetlink_store_nodes{status="online"}')).toBe(1);
    expect(v(after, "process_cpu_user_seconds_total")).toBeGreaterThan(0);

    // The slow handler's instruction expired while it ran: the node was told (cancel) and drops its late
    // result, so nothing is refused and nothing more is stored.
    const cancels = 'fleetlink_cancellations_total{code="FLEETLINK_E_MESSAGE_EXPIRED"}';
    const told = await scrapeUntil(f, (s) => v(s, cancels) - v(before, cancels) >= 1);
    expect(v(told, cancels) - v(before, cancels)).toBe(1);
    await sleep(900);
    const late = await scrape(f);
    const refused = 'fleetlink_replies_refused_total{code="FLEETLINK_E_MESSAGE_EXPIRED"}';
    expect(v(late, refused) - v(before, refused)).toBe(0);
    expect(
      v(late, 'fleetlink_replies_stored_total{outcome="ok"}') -
        v(before, 'fleetlink_replies_stored_total{outcome="ok"}'),
    ).toBe(3);
  });

  test("metrics - HTTP series use the route pattern, never the raw URL", async () => {
    f = await startFleet();
    const a = await f.node("a", { echo: (p) => p });
    const before = await scrape(f);
    for (let i = 0; i < 2; i++) {
      const res = await f.hub.app.inject({
        url: `/v1/nodes/${a.nodeId}`,
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      expect(res.statusCode).toBe(200);
    }
    const missing = await f.hub.app.inject({ url: `/v1/nowhere/${newId()}` });
    expect(missing.statusCode).toBe(404);
    const after = await scrape(f);
    const key = 'fleetlink_http_requests_total{method="GET",route="/v1/nodes/:node",status="200"}';
    expect(v(after, key) - v(before, key)).toBe(2);
    const unmatched = 'fleetlink_http_requests_total{method="GET",route="unmatched",status="404"}';
    expect(v(after, unmatched) - v(before, unmatched)).toBe(1);
    expect(
      v(after, 'fleetlink_http_request_duration_seconds_count{method="GET",route="/v1/nodes/:node"}'),
    ).toBe(2);
    for (const k of after.series.keys()) expect(k).not.toContain(a.nodeId!);
  });

  test("metrics - only the admin token or the metrics token may scrape", async () => {
    f = await startFleet({ metricsToken: SCRAPE_TOKEN });
    const a = await f.node("a", { echo: (p) => p });
    const get = (authorization?: string) =>
      f.hub.app.inject({ url: "/metrics", headers: authorization ? { authorization } : {} });
    expect((await get()).statusCode).toBe(401);
    expect((await get("Bearer wrong")).statusCode).toBe(401);
    expect(a.nodeId).toBeTruthy();
    expect((await get(`Bearer ${await nodeToken(f)}`)).statusCode).toBe(403);
    expect((await get(`Bearer ${ENROLL_TOKEN}`)).statusCode).toBe(403);
    expect((await get(`Bearer ${SCRAPE_TOKEN}`)).statusCode).toBe(200);
    expect((await get(`Bearer ${TOKEN}`)).statusCode).toBe(200);
    // The scrape token (role metrics) opens /metrics and nothing else: 403 naming the roles needed.
    const nodes = await f.hub.app.inject({
      url: "/v1/nodes",
      headers: { authorization: `Bearer ${SCRAPE_TOKEN}` },
    });
    expect(nodes.statusCode).toBe(403);
    expect(nodes.json().error.message).toMatch(
      /needs role admin, coordinator or reader; this token has role metrics/,
    );
  });

  test("metrics - metrics: false serves no /metrics", async () => {
    f = await startFleet({ metrics: false });
    const res = await f.hub.app.inject({ url: "/metrics", headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.statusCode).toBe(404);
  });

  test("metrics - an empty metricsToken is refused naming the field", async () => {
    await expect(startFleet({ metricsToken: "" })).rejects.toThrow(/metricsToken/);
  });

  test("metrics - every fleetlink_ series is named the Prometheus way and documented", async () => {
    f = await startFleet();
    const s = await scrape(f);
    const docs = readFileSync(new URL("../../docs/metrics.md", import.meta.url), "utf8");
    const names = [...s.types.keys()];
    expect(names.length).toBeGreaterThan(20);
    // prom-client's process metrics keep their standard, unprefixed names (stock dashboards use them); they
    // name a few gauges "..._total" (active handles and the like).
    const processMetric = (n: string) => /^(process|nodejs)_/.test(n);
    for (const n of names) {
      const type = s.types.get(n)!;
      if (!processMetric(n)) expect(n, n).toMatch(/^fleetlink_[a-z0-9_]+$/);
      if (type === "counter") expect(n, `counter ${n}`).toMatch(/_total$/);
      else if (!processMetric(n)) expect(n, `${type} ${n}`).not.toMatch(/_total$/);
      if (type === "histogram") expect(n, `histogram ${n}`).toMatch(/_(seconds|bytes)$/);
      if (/duration|latency|_time/.test(n)) expect(n, n).toMatch(/_seconds(_total)?$/);
      if (!processMetric(n)) expect(docs, `docs/metrics.md names ${n}`).toContain(`\`${n}\``);
    }
    for (const n of [
      "fleetlink_instructions_pushed_total",
      "fleetlink_instructions_claimed_total",
      "fleetlink_redeliveries_total",
      "fleetlink_lease_expiries_total",
      "fleetlink_replies_stored_total",
      "fleetlink_replies_duplicate_total",
      "fleetlink_reply_latency_seconds",
      "fleetlink_sweep_duration_seconds",
      "fleetlink_store_operation_seconds",
      "fleetlink_connected_nodes",
      "fleetlink_run_streams",
      "fleetlink_inflight_instructions",
      "fleetlink_checkpoint_bytes_total",
      "fleetlink_checkpoint_duration_seconds",
      "fleetlink_http_requests_total",
      "fleetlink_http_request_duration_seconds",
    ])
      expect(names).toContain(n);
  });
});

describe("metrics - checkpoints", () => {
  test("checkpoint metrics - a push and a pull count their bytes, hosts and outcomes", async () => {
    const f = await startCheckpointFleet();
    try {
      const hosts = await Promise.all(["h0", "h1"].map((n, i) => f.node(n, { bytes: 4096 + i })));
      const run = await f.fleet.createRun();
      await f.fleet.checkpoints.assign(
        run,
        hosts.map((h) => h.agent.nodeId!),
      );
      const before = await scrape(f);
      const pushed = await f.fleet.checkpoints.push(run);
      expect(pushed.status).toBe("ok");
      const [summary] = await f.fleet.checkpoints.list(run);
      expect(summary!.bytes).toBeGreaterThan(0);
      expect((await f.fleet.checkpoints.pull(run, "latest")).status).toBe("ok");
      const after = await scrape(f);
      const d = (key: string) => v(after, key) - v(before, key);
      for (const kind of ["push", "pull"]) {
        expect(d(`fleetlink_checkpoint_bytes_total{kind="${kind}"}`), kind).toBe(summary!.bytes);
        expect(d(`fleetlink_checkpoint_hosts_total{kind="${kind}",outcome="ok"}`), kind).toBe(2);
        expect(d(`fleetlink_checkpoint_operations_total{kind="${kind}",outcome="ok"}`), kind).toBe(1);
        expect(d(`fleetlink_checkpoint_duration_seconds_count{kind="${kind}"}`), kind).toBe(1);
      }
      // The hub's own calls to the hosts go through the store like any other instruction.
      expect(d("fleetlink_instructions_pushed_total")).toBeGreaterThanOrEqual(4);
    } finally {
      await f.close();
    }
  });
});

/** A node credential, as a node holds it: enroll one directly with the enrollment token. */
const nodeToken = async (f: TestFleet): Promise<string> => {
  const res = await f.hub.app.inject({
    method: "POST",
    url: "/v1/nodes/enroll",
    headers: { authorization: `Bearer ${ENROLL_TOKEN}` },
    payload: { name: `cred-${newId().slice(0, 8)}` },
  });
  expect(res.statusCode, res.body).toBe(201);
  const body = res.json() as { node: { id: string }; credential: string };
  return `${body.node.id}.${body.credential}`;
};

describe("metrics - request log", () => {
  let f: TestFleet;
  afterEach(async () => {
    await f?.close();
  });

  test("request log - one info line per request with route, status and ids, and no secrets", async () => {
    const lines: Record<string, unknown>[] = [];
    const raw: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split("\n").filter(Boolean)) {
          raw.push(l);
          lines.push(JSON.parse(l));
        }
        done();
      },
    });
    f = await startFleet({ logger: pino({ level: "info" }, sink), metricsToken: SCRAPE_TOKEN });
    const a = await f.node("a", { echo: (p) => p });
    const auth = { authorization: `Bearer ${TOKEN}` };
    await f.hub.app.inject({ url: `/v1/nodes/${a.nodeId}`, headers: auth });
    await f.hub.app.inject({ url: "/healthz" });
    await f.hub.app.inject({ url: "/metrics", headers: { authorization: `Bearer ${SCRAPE_TOKEN}` } });
    await f.hub.app.inject({ url: "/v1/nodes", headers: { authorization: "Bearer not-the-token" } });
    const requests = lines.filter((l) => l.msg === "request");
    const show = requests.find((l) => l.route === "/v1/nodes/:node");
    expect(show).toMatchObject({ level: 30, method: "GET", status: 200, nodeId: a.nodeId });
    expect(typeof show!.reqId).toBe("string");
    expect(typeof show!.ms).toBe("number");
    expect(requests.filter((l) => l.route === "/v1/nodes/:node")).toHaveLength(1);
    expect(requests.find((l) => l.route === "/v1/nodes")).toMatchObject({ status: 401 });
    // Probes and scrapes are at debug, below this logger's level.
    expect(requests.filter((l) => l.route === "/healthz" || l.route === "/metrics")).toEqual([]);
    const all = raw.join("\n");
    for (const secret of [TOKEN, SCRAPE_TOKEN, ENROLL_TOKEN, "not-the-token"])
      expect(all).not.toContain(secret);
    expect(all.toLowerCase()).not.toContain("authorization");
  });

  test("request log - health probes and scrapes are logged at debug", async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
        done();
      },
    });
    f = await startFleet({ logger: pino({ level: "debug" }, sink) });
    await f.hub.app.inject({ url: "/healthz" });
    await f.hub.app.inject({ url: "/readyz" });
    await f.hub.app.inject({ url: "/metrics", headers: { authorization: `Bearer ${TOKEN}` } });
    const probes = lines.filter((l) => l.msg === "request");
    expect(probes.map((l) => [l.route, l.level])).toEqual([
      ["/healthz", 20],
      ["/readyz", 20],
      ["/metrics", 20],
    ]);
  });
});

describe("metrics - instrumented store", () => {
  let store: Store;
  afterEach(async () => {
    await store?.close();
  });

  const setup = async () => {
    store = await openStore("sqlite::memory:", { leaseMs: 60 });
    const registry = new Registry();
    const m = createStoreMetrics([registry]);
    const s = instrumentStore(store, m);
    const node = await s.registerNode({ name: "n", heartbeatIntervalMs: 60_000 });
    await s.heartbeat(node.id);
    const run = await s.createRun();
    /** The sum of a metric's values whose labels include `labels` (histograms: their _count). */
    const count = async (name: string, labels: Record<string, string> = {}) =>
      (await registry.getSingleMetric(name)!.get()).values
        .filter((x) => {
          const n = (x as { metricName?: string }).metricName;
          return !n || n.endsWith("_count");
        })
        .filter((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l))
        .reduce((n, x) => n + x.value, 0);
    return { s, node, run, count };
  };

  test("lease expiries - a lease that ran out counts, a release does not, both are redeliveries", async () => {
    const { s, node, run, count } = await setup();
    await s.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: 60_000, maxAttempts: 10 }]);
    expect(await s.claimInstructions({ nodeIds: [node.id], limit: 10 })).toHaveLength(1);
    await sleep(100); // the 60 ms lease runs out
    const again = await s.claimInstructions({ nodeIds: [node.id], limit: 10 });
    expect(again.map((i) => i.attempts)).toEqual([2]);
    expect(await count("fleetlink_lease_expiries_total")).toBe(1);
    expect(await count("fleetlink_redeliveries_total")).toBe(1);

    await s.releaseInstructions({ nodeId: node.id });
    expect(await s.claimInstructions({ nodeIds: [node.id], limit: 10 })).toHaveLength(1);
    expect(await count("fleetlink_redeliveries_total")).toBe(2);
    expect(await count("fleetlink_lease_expiries_total")).toBe(1);
    expect(await count("fleetlink_instructions_claimed_total")).toBe(3);
  });

  test("instrumented store - duplicates, withdrawals and failed calls are counted; unknown methods are timed", async () => {
    const { s, node, run, count } = await setup();
    const [i1, i2] = await s.pushInstructions(run.id, [
      { dst: node.id, method: "m", ttlMs: 60_000 },
      { dst: node.id, method: "m", ttlMs: 60_000 },
    ]);
    expect(await s.withdrawInstructions(run.id, [i2!.id])).toEqual([i2!.id]);
    const reply = { runId: run.id, nodeId: node.id, replyTo: i1!.id, id: newId() };
    await s.storeReplies([reply]);
    const [dup] = await s.storeReplies([reply]);
    expect(dup).toMatchObject({ ok: true, duplicate: true });
    expect(await count("fleetlink_replies_duplicate_total")).toBe(1);
    expect(await count("fleetlink_replies_stored_total")).toBe(2); // ok + CANCELLED
    // A code a node made up is not a label value of its own.
    const [i3] = await s.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: 60_000 }]);
    await s.storeReplies([
      { runId: run.id, nodeId: node.id, replyTo: i3!.id, error: { code: `MY_${newId()}`, message: "no" } },
    ]);
    expect(await count("fleetlink_replies_stored_total", { outcome: "other" })).toBe(1);
    await expect(s.getRun("not-an-id")).rejects.toThrow(/UUID/);
    expect(await count("fleetlink_store_errors_total", { operation: "getRun" })).toBe(1);
    expect(await count("fleetlink_store_operation_seconds", { operation: "getRun", backend: "sqlite" })).toBe(
      1,
    );
    // A method no hook knows (as a new fast-path method would be) is timed all the same.
    await s.stats();
    expect(await count("fleetlink_store_operation_seconds", { operation: "stats" })).toBe(1);
  });
});
