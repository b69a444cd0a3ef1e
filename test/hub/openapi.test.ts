// The OpenAPI document describes every route the hub serves, with its auth and error codes, and the answers
// routes really give match the schemas it documents.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createHub, type Hub } from "../../src/hub/server.ts";
import { CheckpointRoutes } from "../../src/protocol/checkpoint-schemas.ts";
import { ErrorCodes } from "../../src/protocol/errors.ts";
import { HttpRoutes } from "../../src/protocol/http-schemas.ts";
import { newId } from "../../src/protocol/ids.ts";
import { openStore } from "../../src/store/open.ts";

const TOKEN = "openapi-admin";
const ENROLL = "openapi-enroll";
const auth = { authorization: `Bearer ${TOKEN}` };
type Operation = {
  summary?: string;
  description?: string;
  tags?: string[];
  security?: unknown[];
  responses?: Record<string, unknown>;
  "x-error-codes"?: string[];
};
type Doc = {
  openapi: string;
  info: { title: string; version: string; description: string };
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> };
};

describe("openapi", () => {
  let dir: string;
  let hub: Hub;
  let doc: Doc;
  const routes: { method: string; url: string; hidden: boolean }[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fleetlink-openapi-"));
    hub = createHub({
      store: await openStore("memory:"),
      token: TOKEN,
      enrollToken: ENROLL,
      checkpointStore: `file://${join(dir, "ckpt")}`,
    });
    // Routes are added when the app gets ready, so this hook sees every one of them.
    hub.app.addHook("onRoute", (r) => {
      for (const method of [r.method].flat())
        routes.push({
          method,
          url: r.url,
          hidden: Boolean((r.schema as { hide?: boolean } | undefined)?.hide),
        });
    });
    await hub.app.ready();
    const res = await hub.app.inject({ method: "GET", url: "/openapi.json" });
    expect(res.statusCode).toBe(200);
    doc = res.json();
  });
  afterAll(async () => {
    await hub.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const operations = () =>
    Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops).map(([method, op]) => ({ path, method, op })),
    );

  test("openapi - every registered route but the hidden ones is in the document with its method", () => {
    // HEAD routes are the ones Fastify adds for each GET.
    const visible = routes.filter((r) => !r.hidden && r.method !== "HEAD");
    expect(visible.length).toBeGreaterThan(30);
    const missing = visible.filter(
      (r) => !doc.paths[r.url.replace(/:(\w+)/g, "{$1}")]?.[r.method.toLowerCase()],
    );
    expect(missing).toEqual([]);
    expect(visible.map((r) => r.url)).toEqual(
      expect.arrayContaining(["/v1/runs", "/v1/runs/:run/instructions"]),
    );
    // The reference UI's own routes are there but hidden.
    expect(routes.some((r) => r.hidden && r.url.startsWith("/docs"))).toBe(true);
    expect(Object.keys(doc.paths).filter((p) => p.startsWith("/docs"))).toEqual([]);
  });

  test("openapi - every operation has a summary, tags, auth and error codes that exist in errors.ts", () => {
    for (const { path, method, op } of operations()) {
      const where = `${method.toUpperCase()} ${path}`;
      expect(op.summary, where).toBeTruthy();
      expect(op.tags?.length, where).toBeGreaterThan(0);
      expect(Array.isArray(op.security), `${where}: security`).toBe(true);
      const codes = op["x-error-codes"];
      expect(Array.isArray(codes), `${where}: x-error-codes`).toBe(true);
      for (const c of codes!) {
        expect(c, where).toMatch(/^FLEETLINK_E_/);
        const entry = ErrorCodes[c.slice("FLEETLINK_E_".length) as keyof typeof ErrorCodes];
        expect(entry, `${where}: ${c} is not in errors.ts`).toBeDefined();
        // Each code's HTTP status is documented as a response with the error body.
        expect(
          op.responses?.[String(entry.status)],
          `${where}: response ${entry.status} for ${c}`,
        ).toBeDefined();
      }
      expect(JSON.stringify(op), `${where}: an example`).toMatch(/"examples?":/);
      if (op.security!.length > 0) expect(codes, where).toContain("FLEETLINK_E_UNAUTHORIZED");
      else expect(["/healthz", "/readyz", "/openapi.json"], `${where} is public`).toContain(path);
    }
  });

  test("openapi - admin routes need the admin token, enrollment its token, streams their credentials", () => {
    const sec = (path: string, method = "get") => doc.paths[path]![method]!.security;
    expect(sec("/v1/runs")).toEqual([{ adminToken: [] }]);
    expect(sec("/v1/nodes/enroll", "post")).toEqual([{ enrollToken: [] }]);
    expect(sec("/v1/nodes/stream")).toEqual([{ nodeCredential: [] }]);
    expect(sec("/v1/runs/{run}/stream")).toEqual([{ adminToken: [] }]);
    expect(sec("/healthz")).toEqual([]);
    expect(doc.paths["/v1/runs/{run}/status"]!.post!["x-error-codes"]).toEqual(
      expect.arrayContaining([
        "FLEETLINK_E_FORBIDDEN",
        "FLEETLINK_E_STATUS_CONFLICT",
        "FLEETLINK_E_RUN_NOT_FOUND",
      ]),
    );
    const node = doc.paths["/v1/nodes/stream"]!.get as Operation & { "x-websocket": { messages: object } };
    expect(Object.keys(node["x-websocket"].messages).sort()).toEqual([
      "cancel",
      "heartbeat",
      "hello",
      "instruction",
      "instructions",
      "leave",
      "progress",
      "reply",
    ]);
  });

  test("openapi - the document is structurally OpenAPI 3 and every $ref resolves", () => {
    expect(doc.openapi).toMatch(/^3\.1\./);
    expect(doc.info).toMatchObject({ title: "fleetlink hub" });
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(doc.info.description).toMatch(/Hidden from this document/);
    expect(Object.keys(doc.components.securitySchemes)).toEqual(
      expect.arrayContaining(["adminToken", "enrollToken", "nodeCredential"]),
    );
    expect(Object.keys(doc.components.schemas)).toEqual(
      expect.arrayContaining([
        "ErrorBody",
        "Frame",
        "ReqFrame",
        "ErrFrame",
        "HelloBody",
        "ReplyBody",
        "WireResult",
      ]),
    );
    for (const { path, method, op } of operations()) {
      expect(Object.keys(op.responses ?? {}).length, `${method} ${path}`).toBeGreaterThan(0);
      for (const [status, r] of Object.entries(op.responses!)) {
        expect(status, `${method} ${path}`).toMatch(/^[1-5]\d\d$/);
        expect((r as { description?: string }).description, `${method} ${path} ${status}`).toBeTruthy();
      }
    }
    const refs: string[] = [];
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === "object")
        for (const [k, x] of Object.entries(v))
          if (k === "$ref") refs.push(x as string);
          else walk(x);
    };
    walk(doc);
    expect(refs.length).toBeGreaterThan(0);
    for (const r of refs)
      expect(doc.components.schemas[r.replace("#/components/schemas/", "")], r).toBeDefined();
    // Examples travel into the document.
    expect(JSON.stringify(doc.paths["/v1/runs/{run}/instructions"]!.post)).toContain("square");
  });

  test("docs - /docs answers the reference UI as HTML, with its assets served here (no CDN)", async () => {
    let res = await hub.app.inject({ method: "GET", url: "/docs" });
    if (res.statusCode >= 300 && res.statusCode < 400)
      res = await hub.app.inject({ method: "GET", url: res.headers.location as string });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/text\/html/);
    expect(res.body).toMatch(/swagger-ui/);
    expect(res.body).not.toMatch(/(src|href)="https?:/);
    const js = await hub.app.inject({ method: "GET", url: "/docs/static/swagger-ui-bundle.js" });
    expect(js.statusCode).toBe(200);
    expect(js.body.length).toBeGreaterThan(100_000);
    const init = await hub.app.inject({ method: "GET", url: "/docs/static/swagger-initializer.js" });
    expect(init.statusCode).toBe(200);
  });

  test("answers - what the routes answer matches the schemas the document shows", async () => {
    const call = async (
      schema: { response: Record<number, TSchema> },
      method: "GET" | "POST" | "PUT" | "DELETE",
      url: string,
      payload?: object,
      headers: Record<string, string> = auth,
    ) => {
      const res = await hub.app.inject({ method, url, headers, ...(payload ? { payload } : {}) });
      const s = schema.response[res.statusCode];
      expect(s, `${method} ${url} answered ${res.statusCode}: ${res.body}`).toBeDefined();
      const check = TypeCompiler.Compile(s!);
      const body = res.json();
      expect(
        [...check.Errors(body)].map((e) => `${e.path}: ${e.message}`),
        `${method} ${url}`,
      ).toEqual([]);
      return body;
    };
    const R = HttpRoutes;
    await call(R.healthz, "GET", "/healthz");
    await call(R.readyz, "GET", "/readyz");
    const { node } = await call(
      R.enroll,
      "POST",
      "/v1/nodes/enroll",
      { name: "doc-node" },
      {
        authorization: `Bearer ${ENROLL}`,
      },
    );
    await call(R.listNodes, "GET", "/v1/nodes");
    await call(R.getNode, "GET", `/v1/nodes/${node.id}`);
    await call(R.getNode, "GET", `/v1/nodes/${newId()}`);
    await call(R.approveNode, "POST", `/v1/nodes/${node.id}/approve`);
    const { token } = await call(R.createToken, "POST", "/v1/enroll-tokens", {
      label: "x",
      uses: 2,
      ttlMs: 60_000,
    });
    await call(R.listTokens, "GET", "/v1/enroll-tokens");
    await call(R.revokeToken, "DELETE", `/v1/enroll-tokens/${token.id}`);
    const { run } = await call(R.createRun, "POST", "/v1/runs", {});
    await call(R.listRuns, "GET", "/v1/runs?limit=5");
    await call(R.listRuns, "GET", "/v1/runs?limit=nope");
    await call(R.getRun, "GET", `/v1/runs/${run.id}`);
    const pushed = await call(R.pushInstructions, "POST", `/v1/runs/${run.id}/instructions`, {
      items: [
        { dst: node.id, method: "square", payload: 3, ttlMs: 60_000, groupId: "g" },
        { dst: node.id, method: "cube", ttlMs: 60_000 },
      ],
    });
    const ids = pushed.instructions.map((i: { id: string }) => i.id);
    await call(R.withdraw, "POST", `/v1/runs/${run.id}/instructions/withdraw`, { ids: [ids[1]] });
    await call(R.listInstructions, "GET", `/v1/runs/${run.id}/instructions`);
    await call(R.queryInstructions, "POST", `/v1/runs/${run.id}/instructions/query`, { ids });
    await call(R.queryReplies, "POST", `/v1/runs/${run.id}/replies/query`, { instructionIds: ids });
    await call(R.claimReplies, "POST", `/v1/runs/${run.id}/replies/claim`, {});
    await call(R.transitionRun, "POST", `/v1/runs/${run.id}/status`, { from: "pending", to: "running" });
    await call(R.transitionRun, "POST", `/v1/runs/${run.id}/status`, { from: "pending", to: "running" });
    await call(R.stats, "GET", "/v1/stats");
    await call(R.stats, "GET", "/v1/stats", undefined, { authorization: `Bearer ${ENROLL}` });
    const C = CheckpointRoutes;
    await call(C.roles, "GET", `/v1/runs/${run.id}/hosts`);
    await call(C.assign, "PUT", `/v1/runs/${run.id}/hosts`, { hosts: [node.id] });
    await call(C.roles, "GET", `/v1/runs/${run.id}/hosts`);
    await call(C.status("push"), "GET", `/v1/runs/${run.id}/checkpoints/push_status`);
    await call(C.takeover, "GET", `/v1/runs/${run.id}/checkpoints/takeover_status`);
    await call(C.list, "GET", `/v1/runs/${run.id}/checkpoints`);
  });
});
