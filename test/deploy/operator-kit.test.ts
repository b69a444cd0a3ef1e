// The operator kit (deploy/grafana/fleetlink-dashboard.json, deploy/prometheus/alerts.yml) is built on documented
// series only: every metric name in every PromQL expression is listed in docs/metrics.md AND is exposed by a
// running hub's /metrics (a real hub on SQLite, a node over WebSocket, calls that succeed and fail, then a scrape);
// and the readiness alert's signal holds on a hub whose PostgreSQL is cut off.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { parse } from "yaml";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";
import { describePg, dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";
import { startProxy } from "../helpers/proxy.ts";

const ROOT = join(import.meta.dirname, "../..");
const read = (f: string) => readFileSync(join(ROOT, f), "utf8");

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: { expr: string; refId: string }[];
  panels?: Panel[];
}
const dashboard = JSON.parse(read("deploy/grafana/fleetlink-dashboard.json")) as {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: string | { query: string } }[] };
};
interface Rule {
  alert: string;
  expr: string;
  for: string;
  labels: { severity: string };
  annotations: { summary: string; description: string };
}
const alerts = parse(read("deploy/prometheus/alerts.yml")) as { groups: { name: string; rules: Rule[] }[] };

const allPanels = (ps: Panel[]): Panel[] => ps.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
const panels = allPanels(dashboard.panels);

/** Every PromQL expression of the kit, named by where it is. */
const expressions: [where: string, expr: string][] = [
  ...panels.flatMap((p) => (p.targets ?? []).map((t): [string, string] => [`panel "${p.title}"`, t.expr])),
  ...dashboard.templating.list
    .filter((v) => v.type === "query")
    .map((v): [string, string] => {
      const q = typeof v.query === "string" ? v.query : v.query.query;
      // label_values(<series selector>, <label>): the selector is PromQL, the label is not a metric.
      return [`variable $${v.name}`, q.replace(/^label_values\((.*),\s*\w+\)$/, "$1")];
    }),
  ...alerts.groups.flatMap((g) => g.rules.map((r): [string, string] => [`alert ${r.alert}`, r.expr])),
];

/** Grafana's data source variable, as the dashboard's panels name it. */
const DATASOURCE = ["$", "{datasource}"].join("");
const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"]);
KEYWORDS.add("group_left").add("group_right").add("inf").add("nan");

/**
 * The metric names a PromQL expression reads: identifiers outside strings, label matchers, ranges and grouping
 * clauses that are not functions (followed by "(") or keywords.
 */
const metricNames = (expr: string): string[] => {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names = new Set<string>();
  for (const m of bare.matchAll(/(?<![\w:.$])([a-zA-Z_:][\w:]*)(?!\w)\s*(\(?)/g))
    if (!m[2] && !KEYWORDS.has(m[1]!.toLowerCase())) names.add(m[1]!);
  return [...names];
};

/** The operands of an expression's top-level `or` (a query that accepts either of two names). */
const orOperands = (expr: string): string[] => {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i];
    if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (depth === 0 && /\sor\s/.test(expr.slice(i - 1, i + 3)) && expr.slice(i, i + 2) === "or") {
      parts.push(expr.slice(start, i));
      start = i + 2;
    }
  }
  parts.push(expr.slice(start));
  return parts;
};

/** Names docs/metrics.md lists, in backticks. */
const documented = new Set([...read("docs/metrics.md").matchAll(/`([a-z_:][\w:]*)`/g)].map((m) => m[1]!));
/** A histogram's series are its name plus _bucket, _sum, _count; documented by its name. */
const isDocumented = (n: string) =>
  documented.has(n) || documented.has(n.replace(/_(bucket|sum|count)$/, ""));
/** Made by Prometheus itself for every target, never by a hub (docs/metrics.md says so). */
const FROM_PROMETHEUS = new Set(["up"]);

let f: TestFleet;
let exposed: Set<string>;
let scrape: string;

beforeAll(async () => {
  f = await startFleet();
  await f.node("kit-a", {
    echo: (p: unknown) => p,
    fail: () => {
      throw new Error("refuses");
    },
  });
  const fleet = await f.fleet();
  const [node] = await fleet.nodes();
  const run = await fleet.createRun();
  for (let i = 0; i < 3; i++) await run.call([node!.id], "echo", i);
  await run.call([node!.id], "fail", null).catch(() => {});
  // A store call that fails (bad input is counted), and an HTTP error.
  await fetch(`${f.url}/v1/runs/${"0".repeat(8)}-0000-4000-8000-${"0".repeat(12)}`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  const res = await fetch(`${f.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  scrape = await res.text();
  exposed = new Set(
    scrape
      .split("\n")
      .flatMap((l) => {
        const type = /^# TYPE (\S+) (\w+)/.exec(l);
        if (type)
          return type[2] === "histogram"
            ? [type[1]!, `${type[1]}_bucket`, `${type[1]}_sum`, `${type[1]}_count`]
            : [type[1]!];
        const sample = /^([a-zA-Z_:][\w:]*)[{ ]/.exec(l);
        return sample ? [sample[1]!] : [];
      })
      .filter(Boolean),
  );
}, 30_000);
afterAll(async () => {
  await f?.close();
});

describe("operator kit", () => {
  test("the PromQL scanner finds metric names, not functions, labels, keywords or variables", () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{job=~"$job",x="y z"}[$__rate_interval]))) / on (instance) group_left b > bool 2 unless c offset 5m',
      ).sort(),
    ).toEqual(["a_bucket", "b", "c"]);
    expect(orOperands("max by (i) (x) or max by (i) (fleetlink_x)")).toHaveLength(2);
    expect(orOperands("count(up == 1) == 0 or absent(up)")).toHaveLength(2);
  });

  test("the dashboard: panels with queries, ids unique, on the $datasource variable, laid out in 24 columns", () => {
    expect(dashboard.uid).toBe("fleetlink-hub");
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const graphs = panels.filter((p) => p.type !== "row");
    expect(graphs.length).toBeGreaterThanOrEqual(20);
    for (const p of graphs) {
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      expect(p.datasource?.uid, p.title).toBe(DATASOURCE);
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
    }
    // What an operator looks for first.
    const text = JSON.stringify(dashboard);
    for (const needle of [
      "fleetlink_http_requests_total",
      "fleetlink_http_request_duration_seconds_bucket",
      "fleetlink_store_operation_seconds_bucket",
      "fleetlink_replies_stored_total",
      "fleetlink_reply_latency_seconds_bucket",
      "fleetlink_connected_nodes",
      "fleetlink_store_instructions",
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
    ])
      expect(text, needle).toContain(needle);
  });

  test("the alert rules: each has an expression, a duration, a severity, a summary and a description", () => {
    const rules = alerts.groups.flatMap((g) => g.rules);
    expect(rules.map((r) => r.alert)).toEqual(
      expect.arrayContaining([
        "FleetlinkHubDown",
        "FleetlinkReplicaNotReady",
        "FleetlinkStoreErrors",
        "FleetlinkStoreSlow",
        "FleetlinkDeliveryFailures",
        "FleetlinkNodesOffline",
        "FleetlinkMemoryHigh",
      ]),
    );
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
    for (const r of rules) {
      expect(r.expr, r.alert).toBeTruthy();
      expect(r.for, r.alert).toMatch(/^\d+[smh]$/);
      expect(["critical", "warning", "info"], r.alert).toContain(r.labels.severity);
      expect(r.annotations.summary, r.alert).toBeTruthy();
      expect(r.annotations.description, r.alert).toBeTruthy();
    }
  });

  test("every metric of every query is documented in docs/metrics.md and exposed by a running hub", () => {
    expect(expressions.length).toBeGreaterThan(40);
    const problems: string[] = [];
    for (const [where, expr] of expressions) {
      const names = metricNames(expr);
      if (names.length === 0) problems.push(`${where}: no metric in ${expr}`);
      for (const n of names) if (!isDocumented(n)) problems.push(`${where}: ${n} is not in docs/metrics.md`);
      // A query written for either of two names (`a or b`) needs one of them on the hub, not both.
      const ok = orOperands(expr).some((part) =>
        metricNames(part).every((n) => FROM_PROMETHEUS.has(n) || exposed.has(n)),
      );
      if (!ok) problems.push(`${where}: not exposed by the hub: ${names.filter((n) => !exposed.has(n))}`);
    }
    expect(problems).toEqual([]);
  });
});

describePg("operator kit - PostgreSQL", () => {
  test("FleetlinkReplicaNotReady's signal: with its store cut off, a hub's /readyz is 503 and its scrape has no store-wide gauges", async () => {
    const rule = alerts.groups.flatMap((g) => g.rules).find((r) => r.alert === "FleetlinkReplicaNotReady")!;
    expect(rule.expr).toContain(
      'unless on (instance, job) fleetlink_store_nodes{job="fleetlink", status="online"}',
    );
    const pg = new URL(PG_URL!);
    const proxy = await startProxy({ host: pg.hostname, port: Number(pg.port || 5432) });
    const { url, schema } = pgSchemaUrl("kitready");
    const u = new URL(url);
    u.host = new URL(proxy.url).host;
    const cut = await startFleet({ storeUrl: u.toString() });
    const online = async () =>
      (await (await fetch(`${cut.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text())
        .split("\n")
        .filter((l) => l.startsWith('fleetlink_store_nodes{status="online"}')).length;
    try {
      expect(await online()).toBe(1);
      expect((await fetch(`${cut.url}/readyz`)).status).toBe(200);
      proxy.set("drop");
      // The store-wide gauges are cached for 1 s.
      await new Promise((r) => setTimeout(r, 1200));
      expect((await fetch(`${cut.url}/readyz`)).status).toBe(503);
      expect(await online()).toBe(0);
      proxy.set("pass");
      await new Promise((r) => setTimeout(r, 1200));
      expect(await online()).toBe(1);
    } finally {
      proxy.set("pass");
      await cut.close();
      await proxy.close();
      await dropSchema(schema);
    }
  }, 30_000);
});
