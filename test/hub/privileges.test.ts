// The privilege matrix: each kind of credential against each route, with the status it must get.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { createHub, type Hub } from "../../src/hub/server.ts";
import { newId } from "../../src/protocol/ids.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";

const ADMIN = "admin-secret-for-tests";
const ENROLL = "static-enroll-secret";

describe("privileges", () => {
  let dir: string;
  let store: Store;
  let hub: Hub;
  let url: string;
  let runId: string;
  let node: { id: string; credential: string };
  let stored: string;
  const creds: Record<string, string | undefined> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fleetlink-priv-"));
    store = await openStore(`sqlite:${join(dir, "hub.db")}`);
    hub = createHub({ store, token: ADMIN, enrollToken: ENROLL, checkpointStore: `file://${dir}/ckpt` });
    url = await hub.listen();
    const t = await hub.app.inject({
      method: "POST",
      url: "/v1/enroll-tokens",
      headers: { authorization: `Bearer ${ADMIN}` },
      payload: { uses: 1000, label: "matrix" },
    });
    expect(t.statusCode).toBe(201);
    stored = t.json().secret;
    const e = await hub.app.inject({
      method: "POST",
      url: "/v1/nodes/enroll",
      headers: { authorization: `Bearer ${ENROLL}` },
      payload: { name: "worker" },
    });
    node = { id: e.json().node.id, credential: e.json().credential };
    runId = (await store.createRun()).id;
    Object.assign(creds, {
      none: undefined,
      junk: "Bearer not-a-token",
      admin: `Bearer ${ADMIN}`,
      enroll: `Bearer ${ENROLL}`,
      stored: `Bearer ${stored}`,
      node: `Bearer ${node.id}.${node.credential}`,
    });
  });
  afterAll(async () => {
    await hub.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // Every coordinator/admin route, with a body that is valid for it.
  const coordinatorRoutes = (): [string, string, unknown?][] => [
    ["GET", "/v1/nodes"],
    ["GET", `/v1/nodes/${node.id}`],
    ["GET", "/v1/runs?status=pending&limit=10"],
    ["GET", `/v1/runs/${runId}/instructions?limit=10`],
    ["GET", `/v1/runs/${runId}/checkpoints/takeover_status`],
    ["POST", `/v1/nodes/${node.id}/approve`],
    ["DELETE", `/v1/nodes/${newId()}`],
    ["POST", "/v1/enroll-tokens", {}],
    ["GET", "/v1/enroll-tokens"],
    ["DELETE", `/v1/enroll-tokens/${newId()}`],
    ["POST", "/v1/runs", {}],
    ["GET", `/v1/runs/${runId}`],
    ["POST", `/v1/runs/${runId}/status`, { from: "running", to: "finished" }],
    ["POST", `/v1/runs/${runId}/instructions`, { items: [{ dst: node.id, method: "m", ttlMs: 1000 }] }],
    ["POST", `/v1/runs/${runId}/instructions/withdraw`, { ids: [newId()] }],
    ["POST", `/v1/runs/${runId}/instructions/query`, { ids: [newId()] }],
    ["POST", `/v1/runs/${runId}/replies/query`, { instructionIds: [newId()] }],
    ["POST", `/v1/runs/${runId}/replies/claim`, {}],
    ["GET", "/v1/stats"],
    ["PUT", `/v1/runs/${runId}/hosts`, { hosts: [node.id] }],
    ["GET", `/v1/runs/${runId}/hosts`],
    ["POST", `/v1/runs/${runId}/hosts/0/activate`],
    ["POST", `/v1/runs/${runId}/checkpoints/push`, {}],
    ["POST", `/v1/runs/${runId}/checkpoints/pull`, { id: "latest" }],
    ["GET", `/v1/runs/${runId}/checkpoints/push_status`],
    ["GET", `/v1/runs/${runId}/checkpoints/pull_status`],
    ["GET", `/v1/runs/${runId}/checkpoints`],
  ];

  const call = (m: string, path: string, body: unknown, auth: string | undefined) =>
    hub.app.inject({
      method: m as "GET",
      url: path,
      headers: auth ? { authorization: auth } : {},
      ...(body === undefined ? {} : { payload: body as object }),
    });

  test("privileges - only the admin token may use coordinator routes; others get 401 (unknown) or 403 (known, wrong role)", async () => {
    const expected: Record<string, number> = { none: 401, junk: 401, enroll: 403, stored: 403, node: 403 };
    const before = await store.stats();
    for (const [m, path, body] of coordinatorRoutes())
      for (const [kind, status] of Object.entries(expected)) {
        const res = await call(m, path, body, creds[kind]);
        expect({ route: `${m} ${path}`, kind, status: res.statusCode }).toEqual({
          route: `${m} ${path}`,
          kind,
          status,
        });
        expect(res.json().error.code).toBe(
          status === 401 ? "FLEETLINK_E_UNAUTHORIZED" : "FLEETLINK_E_FORBIDDEN",
        );
      }
    expect(await store.stats()).toEqual(before);
    // The admin token gets past authentication on every one of them (whatever the route then answers).
    for (const [m, path, body] of coordinatorRoutes()) {
      const res = await call(m, path, body, creds.admin);
      expect([401, 403], `${m} ${path}`).not.toContain(res.statusCode);
    }
  });

  test("privileges - only enrollment tokens may enroll; the admin token and node credentials are refused", async () => {
    const expected: Record<string, number> = {
      none: 401,
      junk: 401,
      admin: 403,
      node: 403,
      enroll: 201,
      stored: 201,
    };
    for (const [kind, status] of Object.entries(expected)) {
      const res = await call("POST", "/v1/nodes/enroll", { name: `e-${kind}` }, creds[kind]);
      expect({ kind, status: res.statusCode }).toEqual({ kind, status });
    }
  });

  const upgrade = (path: string, auth: string | undefined) =>
    new Promise<number>((resolve) => {
      const ws = new WebSocket(`${url.replace("http", "ws")}${path}`, {
        headers: auth ? { authorization: auth } : {},
      });
      ws.on("open", () => {
        ws.close();
        resolve(101);
      });
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode!));
      ws.on("error", () => {});
    });

  test("privileges - the node stream takes only node credentials, run streams only admin or coordinator credentials", async () => {
    for (const [kind, status] of Object.entries({
      none: 401,
      junk: 401,
      admin: 401,
      enroll: 401,
      stored: 401,
      node: 101,
    }))
      expect({ kind, status: await upgrade("/v1/nodes/stream", creds[kind]) }).toEqual({ kind, status });
    for (const [kind, status] of Object.entries({
      none: 401,
      junk: 401,
      admin: 101,
      // Run streams need role admin or coordinator: known credentials of another kind get 403.
      enroll: 403,
      stored: 403,
      node: 403,
    }))
      expect({ kind, status: await upgrade(`/v1/runs/${runId}/stream`, creds[kind]) }).toEqual({
        kind,
        status,
      });
  });

  test("privileges - the hub refuses an enrollment token equal to the admin token", () => {
    expect(() => createHub({ store, token: "same", enrollToken: "same" })).toThrow(/enrollToken/);
  });
});
