// The read routes the CLI and the dashboard list things with: runs, one node, a run's instructions.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createHub, type Hub } from "../../src/hub/server.ts";
import { newId } from "../../src/protocol/ids.ts";
import { openStore } from "../../src/store/open.ts";
import { type Store, storeReply } from "../../src/store/store.ts";

const TOKEN = "read-routes-token";
const auth = { authorization: `Bearer ${TOKEN}` };

describe("read routes", () => {
  let hub: Hub;
  let store: Store;
  let node: { id: string; name: string };

  beforeAll(async () => {
    store = await openStore("memory:");
    hub = createHub({ store, token: TOKEN, enrollToken: "enroll" });
    const res = await hub.app.inject({
      method: "POST",
      url: "/v1/nodes/enroll",
      headers: { authorization: "Bearer enroll" },
      payload: { name: "reader" },
    });
    expect(res.statusCode).toBe(201);
    node = res.json().node;
  });
  afterAll(async () => {
    await hub.close();
  });

  const get = (url: string) => hub.app.inject({ method: "GET", url, headers: auth });

  test("GET /v1/nodes/:node - the node as GET /v1/nodes shows it, never its credential hash", async () => {
    const res = await get(`/v1/nodes/${node.id}`);
    expect(res.statusCode).toBe(200);
    const listed = (await get("/v1/nodes")).json().nodes.find((n: { id: string }) => n.id === node.id);
    expect(res.json().node).toEqual(listed);
    expect(res.json().node).toMatchObject({ id: node.id, name: "reader", approved: true });
    expect(res.body).not.toContain("credentialHash");
    const missing = await get(`/v1/nodes/${newId()}`);
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error.code).toBe("FLEETLINK_E_NODE_NOT_FOUND");
    const bad = await get("/v1/nodes/nope");
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toMatchObject({ code: "FLEETLINK_E_INVALID_ARGUMENT", field: "params.node" });
  });

  test("GET /v1/runs - newest first, by status, limited; bad values name the field", async () => {
    const a = await store.createRun();
    await new Promise((r) => setTimeout(r, 2));
    const b = await store.createRun();
    await store.transitionRun(a.id, "pending", "running");
    const all = (await get("/v1/runs")).json().runs.map((r: { id: string }) => r.id);
    expect(all.indexOf(b.id)).toBeLessThan(all.indexOf(a.id));
    const running = await get("/v1/runs?status=running");
    expect(running.statusCode).toBe(200);
    expect(running.json()).toEqual({ runs: [await store.getRun(a.id)] });
    expect((await get("/v1/runs?limit=1")).json().runs).toHaveLength(1);
    for (const [q, field] of [
      ["status=done", "querystring.status"],
      ["limit=abc", "querystring.limit"],
      ["limit=0", "limit"],
      ["limit=1001", "limit"],
      ["other=1", "querystring.other"],
    ]) {
      const res = await get(`/v1/runs?${q}`);
      expect({ q, status: res.statusCode, error: res.json().error }).toMatchObject({
        q,
        status: 400,
        error: { code: "FLEETLINK_E_INVALID_ARGUMENT", field },
      });
    }
  });

  test("GET /v1/runs/:run/instructions - newest first, each with its reply or null", async () => {
    const run = await store.createRun();
    const [first, second] = await store.pushInstructions(run.id, [
      { dst: node.id, method: "square", ttlMs: 60_000, groupId: "g1" },
      { dst: node.id, method: "cube", ttlMs: 60_000 },
    ]);
    await store.claimInstructions({ nodeIds: [node.id], limit: 1 });
    const { reply } = await storeReply(store, {
      runId: run.id,
      nodeId: node.id,
      replyTo: first!.id,
      error: { code: "FLEETLINK_E_HANDLER_FAILED", message: "boom" },
    });
    const res = await get(`/v1/runs/${run.id}/instructions`);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      instructions: [
        {
          id: second!.id,
          dst: node.id,
          method: "cube",
          groupId: null,
          state: "pending",
          attempts: 0,
          createdAt: second!.createdAt,
          expiresAt: second!.expiresAt,
          reply: null,
        },
        {
          id: first!.id,
          dst: node.id,
          method: "square",
          groupId: "g1",
          state: "done",
          attempts: 1,
          createdAt: first!.createdAt,
          expiresAt: first!.expiresAt,
          reply: {
            id: reply.id,
            error: { code: "FLEETLINK_E_HANDLER_FAILED", message: "boom" },
            createdAt: reply.createdAt,
          },
        },
      ],
    });
    expect((await get(`/v1/runs/${run.id}/instructions?limit=1`)).json().instructions).toHaveLength(1);
    const missing = await get(`/v1/runs/${newId()}/instructions`);
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error.code).toBe("FLEETLINK_E_RUN_NOT_FOUND");
    const bad = await get(`/v1/runs/${run.id}/instructions?limit=5000`);
    expect(bad.json().error).toMatchObject({ code: "FLEETLINK_E_INVALID_ARGUMENT", field: "limit" });
  });
});
