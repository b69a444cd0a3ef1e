// The isolation matrix, generated from the hub's OpenAPI document: every operation × every kind of credential,
// on SQLite and PostgreSQL. Each operation says what it needs (`x-access`); the expected decision (401, 403, 404 for
// another tenant's run/node/token, or past the access check) follows from that and the credential's role and
// tenant, so a new route is covered as soon as it exists, and a route without an access need fails here.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { ACCESS, type Access, ROLES_FOR } from "../../src/hub/http/access.ts";
import { createHub, type Hub } from "../../src/hub/server.ts";
import { newId } from "../../src/protocol/ids.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";
import { dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";

const ADMIN = "matrix-admin-token";
const ENROLL = "matrix-enroll-token";
const METRICS = "matrix-metrics-token";

type Backend = { name: string; open(): Promise<{ url: string; dir: string; cleanup(): Promise<void> }> };
const backends: Backend[] = [
  {
    name: "sqlite",
    async open() {
      const dir = mkdtempSync(join(tmpdir(), "fleetlink-matrix-"));
      return {
        url: `sqlite:${join(dir, "hub.db")}`,
        dir,
        cleanup: async () => rmSync(dir, { recursive: true }),
      };
    },
  },
  // Under CI=true the global setup fails loudly without FLEETLINK_TEST_POSTGRES_URL.
  ...(PG_URL
    ? [
        {
          name: "postgres",
          async open() {
            const dir = mkdtempSync(join(tmpdir(), "fleetlink-matrix-pg-"));
            const { url, schema } = pgSchemaUrl("matrix");
            return {
              url,
              dir,
              cleanup: async () => {
                await dropSchema(schema);
                rmSync(dir, { recursive: true });
              },
            };
          },
        },
      ]
    : []),
];

/** A kind of credential: what it is, and the tenant it is limited to (null: every tenant). */
interface Cred {
  name: string;
  auth: string | undefined;
  kind: "none" | "admin-token" | "metrics-token" | "principal" | "enroll" | "node";
  role?: string;
  tenant: string | null;
}

type Decision = "pass" | 401 | 403;

/** What the route's access need and the credential decide, before any tenant rule. */
const decide = (access: Access, c: Cred, path: string): Decision => {
  if (access === "public") return "pass";
  if (c.kind === "none") return 401;
  // Node routes take only node credentials; anything else is simply not one (401), as today.
  if (access === "node") return c.kind === "node" ? "pass" : 401;
  if (access === "enroll") return c.kind === "enroll" ? "pass" : 403;
  if (c.kind === "enroll" || c.kind === "node") return 403;
  const role = c.kind === "admin-token" ? "admin" : c.kind === "metrics-token" ? "metrics" : c.role!;
  if (!(ROLES_FOR[access] as readonly string[]).includes(role)) return 403;
  // Metrics are hub-wide: a tenant-scoped token may not scrape them.
  if (path === "/metrics" && c.tenant !== null) return 403;
  return "pass";
};

interface Op {
  method: string;
  path: string;
  access: Access;
  stream: boolean;
  sse: boolean;
  /** The error codes the document lists for it. */
  codes: string[];
}

describe.each(backends)("isolation matrix ($name)", (backend) => {
  let env: Awaited<ReturnType<Backend["open"]>>;
  let store: Store;
  let hub: Hub;
  let url: string;
  let doc: { paths: Record<string, Record<string, Record<string, unknown>>> };
  const creds: Cred[] = [];
  const fx = {} as {
    runA: string;
    runB: string;
    nodeA: { id: string; credential: string };
    nodeB: { id: string; credential: string };
    enrollA: { id: string; secret: string };
    enrollB: { id: string; secret: string };
  };

  const inject = (method: string, path: string, auth: string | undefined, body?: unknown) =>
    hub.app.inject({
      method: method as "GET",
      url: path,
      headers: auth ? { authorization: auth } : {},
      ...(body === undefined ? {} : { payload: body as object }),
    });
  const adminCall = async (method: string, path: string, body?: unknown) => {
    const r = await inject(method, path, `Bearer ${ADMIN}`, body);
    expect(r.statusCode, `${method} ${path}: ${r.body}`).toBeLessThan(300);
    return r.json();
  };
  const principal = async (role: string, tenant: string | null) =>
    (await adminCall("POST", "/v1/tokens", { role, tenant, label: `${role}@${tenant ?? "*"}` })) as {
      token: { id: string };
      secret: string;
    };
  const enrollNode = async (secret: string, name: string) => {
    const r = await inject("POST", "/v1/nodes/enroll", `Bearer ${secret}`, { name });
    expect(r.statusCode, r.body).toBe(201);
    return { id: r.json().node.id as string, credential: r.json().credential as string };
  };

  beforeAll(async () => {
    env = await backend.open();
    store = await openStore(env.url);
    hub = createHub({
      store,
      token: ADMIN,
      enrollToken: ENROLL,
      metricsToken: METRICS,
      checkpointStore: `file://${join(env.dir, "ckpt")}`,
      blobStore: `file://${join(env.dir, "blobs")}`,
    });
    url = await hub.listen();
    doc = (await hub.app.inject({ url: "/openapi.json" })).json();
    const ea = await adminCall("POST", "/v1/enroll-tokens", { tenant: "a", label: "a" });
    const eb = await adminCall("POST", "/v1/enroll-tokens", { tenant: "b", label: "b" });
    fx.enrollA = { id: ea.token.id, secret: ea.secret };
    fx.enrollB = { id: eb.token.id, secret: eb.secret };
    fx.nodeA = await enrollNode(ea.secret, "node-a");
    fx.nodeB = await enrollNode(eb.secret, "node-b");
    fx.runA = (await adminCall("POST", "/v1/runs", { tenant: "a" })).run.id;
    fx.runB = (await adminCall("POST", "/v1/runs", { tenant: "b" })).run.id;
    const p = async (name: string, role: string, tenant: string | null): Promise<Cred> => ({
      name,
      auth: `Bearer ${(await principal(role, tenant)).secret}`,
      kind: "principal",
      role,
      tenant,
    });
    creds.push(
      { name: "none", auth: undefined, kind: "none", tenant: null },
      { name: "admin-token", auth: `Bearer ${ADMIN}`, kind: "admin-token", tenant: null },
      { name: "metrics-token", auth: `Bearer ${METRICS}`, kind: "metrics-token", tenant: null },
      await p("admin@a", "admin", "a"),
      await p("coordinator@a", "coordinator", "a"),
      await p("reader@a", "reader", "a"),
      await p("metrics@a", "metrics", "a"),
      await p("coordinator@b", "coordinator", "b"),
      await p("reader@*", "reader", null),
      { name: "enroll-token", auth: `Bearer ${ENROLL}`, kind: "enroll", tenant: "default" },
      { name: "enroll-token@a", auth: `Bearer ${fx.enrollA.secret}`, kind: "enroll", tenant: "a" },
      {
        name: "node@a",
        auth: `Bearer ${fx.nodeA.id}.${fx.nodeA.credential}`,
        kind: "node",
        tenant: "a",
      },
    );
  });
  afterAll(async () => {
    await hub?.close();
    await store?.close();
    await env?.cleanup();
  });

  const operations = (): Op[] => {
    const ops: Op[] = [];
    for (const [path, byMethod] of Object.entries(doc.paths))
      for (const [method, op] of Object.entries(byMethod))
        ops.push({
          method: method.toUpperCase(),
          path,
          access: op["x-access"] as Access,
          stream: "x-websocket" in op,
          sse: path === "/v1/events",
          codes: (op["x-error-codes"] as string[] | undefined) ?? [],
        });
    return ops;
  };

  test("every operation of the OpenAPI document declares what it needs (x-access)", () => {
    const ops = operations();
    expect(ops.length).toBeGreaterThan(40);
    for (const op of ops) expect(ACCESS, `${op.method} ${op.path}`).toContain(op.access);
    // The document covers the routes of this hub: runs, nodes, tokens, checkpoints, blobs, node API, streams.
    const paths = new Set(ops.map((o) => o.path));
    for (const p of [
      "/v1/tokens",
      "/v1/runs/{run}/hosts",
      "/v1/runs/{run}/blobs",
      "/v1/node/open",
      "/v1/runs/{run}/stream",
      "/v1/audit",
      "/v1/events",
      "/metrics",
    ])
      expect(paths, p).toContain(p);
  });

  test("a route registered without an access need makes the hub refuse to start", () => {
    const other = createHub({ store, token: "x-other-admin", metrics: false, dashboard: false });
    expect(() => other.app.get("/v1/undeclared", async () => ({ ok: true }))).toThrow(/declares no access/);
    expect(() =>
      other.app.get("/v1/declared", { config: { access: "read" } }, async () => ({ ok: true })),
    ).not.toThrow();
    return other.close();
  });

  /** A concrete path: the credential's own tenant's things (`own`) or the other tenant's. */
  const fill = (
    path: string,
    side: "own" | "other",
    c: Cred,
    tokens: { principal: string; enroll: string },
  ) => {
    const inB = side === "other" ? c.tenant !== "b" : c.tenant === "b";
    return path
      .replace("{run}", inB ? fx.runB : fx.runA)
      .replace("{node}", inB ? fx.nodeB.id : fx.nodeA.id)
      .replace("{token}", path.startsWith("/v1/tokens") ? tokens.principal : tokens.enroll)
      .replace("{host}", "0")
      .replace("{id}", newId())
      .replace("{sha256}", "a".repeat(64));
  };

  /** A body that passes validation, so that what answers is the access and tenant rule, not the schema. */
  const bodyFor = (op: Op, c: Cred, side: "own" | "other"): unknown => {
    const node = (side === "other" ? c.tenant !== "b" : c.tenant === "b") ? fx.nodeB.id : fx.nodeA.id;
    const key = `${op.method} ${op.path}`;
    const bodies: Record<string, unknown> = {
      "POST /v1/nodes/enroll": { name: `n-${newId().slice(-8)}` },
      "POST /v1/enroll-tokens": { label: "m" },
      "POST /v1/tokens": { role: "reader" },
      "POST /v1/runs": {},
      "POST /v1/runs/{run}/status": { from: "finished", to: "running" },
      "POST /v1/runs/{run}/instructions": { items: [{ dst: node, method: "m", ttlMs: 60_000 }] },
      "POST /v1/runs/{run}/instructions/withdraw": { ids: [newId()] },
      "POST /v1/runs/{run}/instructions/query": { ids: [newId()] },
      "POST /v1/runs/{run}/replies/query": { instructionIds: [newId()] },
      "POST /v1/runs/{run}/replies/claim": { limit: 1 },
      "PUT /v1/runs/{run}/hosts": { hosts: [node] },
      "POST /v1/runs/{run}/checkpoints/push": {},
      "POST /v1/runs/{run}/checkpoints/pull": { id: "latest" },
      "POST /v1/runs/{run}/blobs": { sha256: "b".repeat(64), size: 1 },
    };
    return bodies[key];
  };

  /** Status and error code of one call (streams: the upgrade's answer; the feed: its status line). */
  const call = async (
    op: Op,
    path: string,
    c: Cred,
    body: unknown,
  ): Promise<{ status: number; code?: string; error?: { message?: string; field?: string } }> => {
    if (op.stream)
      return new Promise((resolve) => {
        const ws = new WebSocket(`${url.replace("http", "ws")}${path}`, {
          headers: c.auth ? { authorization: c.auth } : {},
        });
        ws.on("open", () => {
          ws.close();
          resolve({ status: 101 });
        });
        ws.on("unexpected-response", (_req, res) => {
          let text = "";
          res.on("data", (d: Buffer) => {
            text += d;
          });
          res.on("end", () => {
            const error = JSON.parse(text).error;
            resolve({ status: res.statusCode ?? 0, code: error?.code, error });
          });
        });
        ws.on("error", () => {});
      });
    if (op.sse) {
      const ac = new AbortController();
      const res = await fetch(`${url}${path}`, {
        headers: c.auth ? { authorization: c.auth } : {},
        signal: ac.signal,
      });
      const error = res.ok
        ? undefined
        : ((await res.json()) as { error: { code: string; message?: string; field?: string } }).error;
      ac.abort();
      return { status: res.status, code: error?.code, error };
    }
    const res = await hub.app.inject({
      method: op.method as "GET",
      url: path,
      headers: {
        ...(c.auth ? { authorization: c.auth } : {}),
        ...(op.method === "PUT" && path.includes("/blobs/")
          ? { "content-type": "application/octet-stream" }
          : {}),
      },
      ...(body === undefined ? {} : { payload: body as object }),
    });
    let error: { code?: string; message?: string; field?: string } | undefined;
    try {
      error = res.json().error;
    } catch {
      error = undefined;
    }
    return { status: res.statusCode, code: error?.code, error };
  };

  const NOT_FOUND: Record<string, string> = {
    "{run}": "FLEETLINK_E_RUN_NOT_FOUND",
    "{node}": "FLEETLINK_E_NODE_NOT_FOUND",
    "{token}": "FLEETLINK_E_TOKEN_NOT_FOUND",
  };

  test("every route × every credential: 401, 403, another tenant's things 404, else past the access check", async () => {
    const before = await store.listRuns({ tenant: "b", limit: 1000 });
    const rows: string[] = [];
    // Destructive operations last, so that the things the others act on still exist.
    const ops = operations().sort((x, y) => Number(x.method === "DELETE") - Number(y.method === "DELETE"));
    for (const op of ops)
      for (const c of creds) {
        // Throwaway tokens to revoke: one of the credential's tenant (or "a"), one of the other.
        const own = c.tenant === "b" ? "b" : "a";
        const oth = own === "a" ? "b" : "a";
        const tokens = async (t: string) => ({
          principal: (await principal("reader", t)).token.id,
          enroll: (await adminCall("POST", "/v1/enroll-tokens", { tenant: t })).token.id,
        });
        const needsToken = op.path.includes("{token}");
        const ownTokens = needsToken ? await tokens(own) : { principal: "", enroll: "" };
        const where = `${op.method} ${op.path} as ${c.name}`;
        const decision = decide(op.access, c, op.path);
        const r = await call(op, fill(op.path, "own", c, ownTokens), c, bodyFor(op, c, "own"));
        rows.push(`${where}: ${r.status} ${r.code ?? ""}`);
        if (decision === 401) {
          expect({ where, status: r.status, code: r.code }).toEqual({
            where,
            status: 401,
            code: "FLEETLINK_E_UNAUTHORIZED",
          });
          continue;
        }
        if (decision === 403) {
          expect({ where, status: r.status, code: r.code }).toEqual({
            where,
            status: 403,
            code: "FLEETLINK_E_FORBIDDEN",
          });
          continue;
        }
        expect([401, 403], `${where}: ${r.status} ${r.code}`).not.toContain(r.status);
        // Its own tenant's things are found.
        for (const [param, code] of Object.entries(NOT_FOUND))
          if (op.path.includes(param) && op.access !== "node")
            expect(r.code, `${where} (own)`).not.toBe(code);
        // A tenant-scoped credential: the other tenant's run, node or token reads as not found.
        const param = Object.keys(NOT_FOUND).find((p) => op.path.includes(p));
        if (c.tenant !== null && param && op.access !== "node" && op.access !== "public") {
          const otherTokens = needsToken ? await tokens(oth) : { principal: "", enroll: "" };
          const o = await call(op, fill(op.path, "other", c, otherTokens), c, bodyFor(op, c, "other"));
          rows.push(`${where} (other tenant): ${o.status} ${o.code ?? ""}`);
          expect({ where, status: o.status, code: o.code }).toEqual({
            where,
            status: 404,
            code: NOT_FOUND[param],
          });
          // …and the document says so.
          expect(op.codes, where).toContain(NOT_FOUND[param]);
          // Exactly as something that does not exist: same message (ids aside) and field, no existence leak.
          const otherId = /\/([0-9a-f-]{36})(?=\/|$)/.exec(fill(op.path, "other", c, otherTokens))?.[1];
          const missing = await call(
            op,
            fill(op.path, "other", c, otherTokens).replace(otherId ?? "-", newId()),
            c,
            bodyFor(op, c, "other"),
          );
          const shape = (x: typeof o) => ({
            status: x.status,
            code: x.code,
            field: x.error?.field,
            message: x.error?.message?.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, "<id>"),
          });
          expect({ where, ...shape(o) }).toEqual({ where, ...shape(missing) });
        }
      }
    // Nothing was created in tenant b by tenant a's credentials.
    const after = await store.listRuns({ tenant: "b", limit: 1000 });
    const byA = after.filter((r) => !before.some((b) => b.id === r.id));
    // coordinator@b made its own runs; none came from the others.
    expect(byA.length).toBeLessThanOrEqual(1);
    expect(rows.length).toBeGreaterThan(operations().length * creds.length);
  }, 120_000);

  test("lists show a scoped credential its own tenant's things only", async () => {
    const get = async (path: string, cred: string) => {
      const c = creds.find((x) => x.name === cred)!;
      const r = await inject("GET", path, c.auth);
      expect(r.statusCode, `${path} as ${cred}: ${r.body}`).toBe(200);
      return r.json();
    };
    const ids = (xs: { id: string }[]) => xs.map((x) => x.id);
    const nodesA = ids((await get("/v1/nodes", "reader@a")).nodes);
    expect(nodesA).toContain(fx.nodeA.id);
    expect(nodesA).not.toContain(fx.nodeB.id);
    const runsA = (await get("/v1/runs?limit=1000", "reader@a")).runs as { id: string; tenant: string }[];
    expect(ids(runsA)).toContain(fx.runA);
    expect(runsA.every((r) => r.tenant === "a")).toBe(true);
    const runsB = ids((await get("/v1/runs?limit=1000", "coordinator@b")).runs);
    expect(runsB).toContain(fx.runB);
    expect(runsB).not.toContain(fx.runA);
    const all = ids((await get("/v1/runs?limit=1000", "reader@*")).runs);
    expect(all).toEqual(expect.arrayContaining([fx.runA, fx.runB]));
    const et = (await get("/v1/enroll-tokens", "admin@a")).tokens as { id: string; tenant: string }[];
    expect(ids(et)).toContain(fx.enrollA.id);
    expect(et.every((t) => t.tenant === "a")).toBe(true);
    const pt = (await get("/v1/tokens", "admin@a")).tokens as { tenant: string | null }[];
    expect(pt.length).toBeGreaterThan(0);
    expect(pt.every((t) => t.tenant === "a")).toBe(true);
    // Counters: no store-wide instruction counts for a scoped reader.
    const stats = await get("/v1/stats", "reader@a");
    expect(stats.store.instructions).toBeNull();
    const counted = Object.values(stats.store.nodes as Record<string, number>).reduce((a, b) => a + b, 0);
    expect(counted).toBe((await store.listNodes({ tenant: "a" })).length);
  });

  test("creating: a scoped credential makes things of its own tenant only; an unscoped one may name any", async () => {
    const as = (cred: string) => creds.find((x) => x.name === cred)!.auth;
    const mine = await inject("POST", "/v1/runs", as("coordinator@a"), {});
    expect(mine.statusCode).toBe(201);
    expect(mine.json().run.tenant).toBe("a");
    const foreign = await inject("POST", "/v1/runs", as("coordinator@a"), { tenant: "b" });
    expect(foreign.statusCode).toBe(403);
    expect(foreign.json().error).toMatchObject({ code: "FLEETLINK_E_FORBIDDEN", field: "tenant" });
    const def = await inject("POST", "/v1/runs", `Bearer ${ADMIN}`);
    expect(def.json().run.tenant).toBe("default");
    // A scoped admin never makes an unscoped token, nor one of another tenant.
    expect(
      (await inject("POST", "/v1/tokens", as("admin@a"), { role: "reader", tenant: null })).statusCode,
    ).toBe(403);
    expect(
      (await inject("POST", "/v1/tokens", as("admin@a"), { role: "reader", tenant: "b" })).statusCode,
    ).toBe(403);
    const t = await inject("POST", "/v1/tokens", as("admin@a"), { role: "coordinator" });
    expect(t.json().token.tenant).toBe("a");
    // Pushes of a run of tenant a to a node of tenant b fail like an unknown node, even for the admin token.
    const push = await inject("POST", `/v1/runs/${fx.runA}/instructions`, `Bearer ${ADMIN}`, {
      items: [{ dst: fx.nodeB.id, method: "m", ttlMs: 1000 }],
    });
    expect(push.statusCode).toBe(404);
    expect(push.json().error).toMatchObject({ code: "FLEETLINK_E_NODE_NOT_FOUND", field: "items[0].dst" });
    // Checkpoint hosts must be nodes of the run's tenant.
    const hosts = await inject("PUT", `/v1/runs/${fx.runA}/hosts`, `Bearer ${ADMIN}`, {
      hosts: [fx.nodeA.id, fx.nodeB.id],
    });
    expect(hosts.statusCode).toBe(404);
    expect(hosts.json().error).toMatchObject({ code: "FLEETLINK_E_NODE_NOT_FOUND", field: "hosts[1]" });
  });

  test("revocation is refused at once on another replica over the same store", async () => {
    const other = createHub({ store, token: ADMIN, metrics: false, dashboard: false });
    try {
      const { token, secret } = await principal("reader", "a");
      const read = () =>
        other.app.inject({ url: "/v1/runs", headers: { authorization: `Bearer ${secret}` } });
      expect((await read()).statusCode).toBe(200);
      expect((await inject("DELETE", `/v1/tokens/${token.id}`, `Bearer ${ADMIN}`)).statusCode).toBe(200);
      const r = await read();
      expect(r.statusCode).toBe(401);
      expect(r.json().error.code).toBe("FLEETLINK_E_UNAUTHORIZED");
    } finally {
      await other.close();
    }
  });
});
