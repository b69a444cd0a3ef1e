// Bad input on every route and on the streams: a clear error naming the field, and nothing changes.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { createHub, type Hub } from "../../src/hub/server.ts";
import { newId } from "../../src/protocol/ids.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";

const TOKEN = "t0ken";
const auth = { authorization: `Bearer ${TOKEN}` };

describe("bad input", () => {
  let hub: Hub;
  let store: Store;
  let url: string;
  let node: { id: string; credential: string };
  let runId: string;

  beforeAll(async () => {
    store = await openStore("memory:", { maxPayloadBytes: 1000 });
    hub = createHub({ store, token: TOKEN, enrollToken: "enroll" });
    url = await hub.listen();
    const res = await hub.app.inject({
      method: "POST",
      url: "/v1/nodes/enroll",
      headers: { authorization: "Bearer enroll" },
      payload: { name: "n1" },
    });
    expect(res.statusCode).toBe(201);
    node = { id: res.json().node.id, credential: res.json().credential };
    runId = (await store.createRun()).id;
  });
  afterAll(async () => {
    await hub.close();
  });

  const inject = (method: "GET" | "POST" | "DELETE", path: string, payload?: unknown, headers = auth) =>
    hub.app.inject({
      method,
      url: path,
      headers,
      ...(payload === undefined ? {} : { payload: payload as object }),
    });

  const expectError = (
    res: { statusCode: number; json: () => { error: { code: string; field?: string } } },
    status: number,
    code: string,
    field?: string,
  ) => {
    expect(res.statusCode).toBe(status);
    expect(res.json().error.code).toBe(`FLEETLINK_E_${code}`);
    if (field !== undefined) expect(res.json().error.field).toBe(field);
  };

  test("routes - missing or wrong tokens are refused with 401 on every coordinator route", async () => {
    const routes: ["GET" | "POST" | "DELETE", string, unknown?][] = [
      ["GET", "/v1/nodes"],
      ["DELETE", `/v1/nodes/${node.id}`],
      ["POST", "/v1/runs", {}],
      ["GET", `/v1/runs/${runId}`],
      ["POST", `/v1/runs/${runId}/status`, { from: "pending", to: "running" }],
      ["POST", `/v1/runs/${runId}/instructions`, { items: [{ dst: node.id, method: "m", ttlMs: 1 }] }],
      ["POST", `/v1/runs/${runId}/instructions/withdraw`, { ids: [] }],
      ["POST", `/v1/runs/${runId}/instructions/query`, { ids: [] }],
      ["POST", `/v1/runs/${runId}/replies/query`, { instructionIds: [] }],
      ["POST", `/v1/runs/${runId}/replies/claim`, {}],
      ["GET", "/v1/stats"],
    ];
    for (const [m, p, body] of routes) {
      expectError(await inject(m, p, body, {} as typeof auth), 401, "UNAUTHORIZED");
      expectError(await inject(m, p, body, { authorization: "Bearer nope" }), 401, "UNAUTHORIZED");
    }
    expectError(
      await inject("POST", "/v1/nodes/enroll", { name: "x" }, { authorization: "Bearer nope" }),
      401,
      "UNAUTHORIZED",
    );
    expect((await store.stats()).runs.pending).toBe(1);
    expect((await store.getNode(node.id)).status).toBe("registered");
  });

  test("routes - malformed bodies and ids get 400 naming the field and change nothing", async () => {
    const before = await store.stats();
    const item = { dst: node.id, method: "m", ttlMs: 1000 };
    const cases: [string, unknown, string][] = [
      [`/v1/runs/${runId}/instructions`, { items: [{ ...item, ttlMs: 0 }] }, "body.items.0.ttlMs"],
      [`/v1/runs/${runId}/instructions`, { items: [{ ...item, dst: "nope" }] }, "body.items.0.dst"],
      [`/v1/runs/${runId}/instructions`, { items: [{ method: "m", ttlMs: 5 }] }, "body.items.0.dst"],
      [`/v1/runs/${runId}/instructions`, { items: [] }, "body.items"],
      [`/v1/runs/${runId}/instructions`, { items: [{ ...item, extra: 1 }] }, "body.items.0.extra"],
      [`/v1/runs/${runId}/instructions`, {}, "body.items"],
      ["/v1/runs/not-a-uuid/instructions", { items: [item] }, "params.run"],
      [`/v1/runs/${runId}/status`, { from: "pending", to: "nowhere" }, "body.to"],
      [`/v1/runs/${runId}/instructions/withdraw`, { ids: ["x"] }, "body.ids.0"],
      [`/v1/runs/${runId}/replies/claim`, { limit: 0 }, "body.limit"],
    ];
    for (const [path, body, field] of cases)
      expectError(await inject("POST", path, body), 400, "INVALID_ARGUMENT", field);
    // An id that is not one says what an id looks like, not the schema's "must match format".
    const notId = await inject("GET", "/v1/runs/nosuch");
    expectError(notId, 400, "INVALID_ARGUMENT", "params.run");
    expect((notId.json() as { error: { message: string } }).error.message).toBe(
      "params.run: must be an id (a UUID, such as 0193a000-0000-7000-8000-000000000001)",
    );
    const raw = await hub.app.inject({
      method: "POST",
      url: `/v1/runs/${runId}/instructions`,
      headers: { ...auth, "content-type": "application/json" },
      payload: "{not json",
    });
    expectError(raw, 400, "INVALID_ARGUMENT");
    expect(await store.stats()).toEqual(before);
  });

  test("routes - an unknown route is a typed 404, and checkpoint routes say they need a checkpoint store", async () => {
    expectError(await inject("GET", "/v1/nope"), 404, "ROUTE_NOT_FOUND", "path");
    const res = await inject("GET", `/v1/runs/${runId}/checkpoints/push_status`);
    expectError(res, 404, "ROUTE_NOT_FOUND");
    expect((res.json() as { error: { message: string } }).error.message).toMatch(/--checkpoint-store/);
  });

  test("routes - unknown references, oversized payloads and wrong transitions get typed errors", async () => {
    const before = await store.stats();
    expectError(await inject("GET", `/v1/runs/${newId()}`), 404, "RUN_NOT_FOUND");
    expectError(
      await inject("POST", `/v1/runs/${newId()}/instructions`, {
        items: [{ dst: node.id, method: "m", ttlMs: 5 }],
      }),
      404,
      "RUN_NOT_FOUND",
    );
    expectError(
      await inject("POST", `/v1/runs/${runId}/instructions`, {
        items: [{ dst: newId(), method: "m", ttlMs: 5 }],
      }),
      404,
      "NODE_NOT_FOUND",
      "items[0].dst",
    );
    expectError(
      await inject("POST", `/v1/runs/${runId}/instructions`, {
        items: [{ dst: node.id, method: "m", ttlMs: 5, payload: "x".repeat(2000) }],
      }),
      413,
      "PAYLOAD_TOO_LARGE",
      "items[0].payload",
    );
    expectError(
      await inject("POST", `/v1/runs/${runId}/status`, { from: "running", to: "finished" }),
      409,
      "STATUS_CONFLICT",
      "from",
    );
    expectError(await inject("DELETE", `/v1/nodes/${newId()}`), 404, "NODE_NOT_FOUND");
    expect(await store.stats()).toEqual(before);
    const big = await hub.app.inject({
      method: "POST",
      url: `/v1/runs/${runId}/instructions`,
      headers: { ...auth, "content-type": "application/json" },
      payload: JSON.stringify({
        items: [{ dst: node.id, method: "m", ttlMs: 5, payload: "y".repeat(17 * 1024 * 1024) }],
      }),
    });
    expectError(big, 413, "PAYLOAD_TOO_LARGE", "body");
  });

  const connect = (token: string) =>
    new Promise<{ ws: WebSocket; status?: number }>((resolve) => {
      const ws = new WebSocket(`${url.replace("http", "ws")}/v1/nodes/stream`, {
        headers: { authorization: `Bearer ${token}` },
      });
      ws.on("open", () => resolve({ ws }));
      ws.on("unexpected-response", (_req, res) => resolve({ ws, status: res.statusCode }));
      ws.on("error", () => {});
    });

  test("stream - a bad credential, an unknown node or a run stream without token is refused at upgrade", async () => {
    expect((await connect(`${node.id}.wrong`)).status).toBe(401);
    expect((await connect(`${newId()}.${node.credential}`)).status).toBe(401);
    expect((await connect("garbage")).status).toBe(401);
    const run = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${url.replace("http", "ws")}/v1/runs/${runId}/stream`);
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode!));
      ws.on("error", () => {});
    });
    expect(run).toBe(401);
  });

  test("stream - malformed frames get an error frame naming the field; a peer that keeps sending garbage is cut off", async () => {
    const { ws } = await connect(`${node.id}.${node.credential}`);
    const frames: { t: string; id?: string; e?: { code: string; field?: string } }[] = [];
    ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
    const closed = new Promise<number>((r) => ws.on("close", (code) => r(code)));
    const next = async () => {
      const n = frames.length;
      while (frames.length === n) await new Promise((r) => setTimeout(r, 5));
      return frames[frames.length - 1]!;
    };
    ws.send(JSON.stringify({ t: "req", id: "0", m: "reply", b: { id: newId(), runId, replyTo: newId() } }));
    expect(await next()).toMatchObject({ t: "err", id: "0", e: { field: "m" } }); // hello first
    ws.send(JSON.stringify({ t: "req", id: "h", m: "hello", b: { inflight: [] } }));
    expect(await next()).toMatchObject({ t: "res", id: "h" });
    ws.send(JSON.stringify({ t: "req", id: "1", m: "reply", b: { id: newId(), runId, replyTo: newId() } }));
    expect(await next()).toMatchObject({
      t: "err",
      id: "1",
      e: { code: "FLEETLINK_E_INSTRUCTION_NOT_FOUND" },
    });
    ws.send(JSON.stringify({ t: "req", id: "2", m: "reply", b: { id: "x", runId, replyTo: newId() } }));
    expect(await next()).toMatchObject({
      t: "err",
      id: "2",
      e: { code: "FLEETLINK_E_INVALID_ARGUMENT", field: "id" },
    });
    ws.send(JSON.stringify({ t: "req", id: "3", m: "launch-missiles" }));
    expect(await next()).toMatchObject({
      t: "err",
      id: "3",
      e: { code: "FLEETLINK_E_INVALID_ARGUMENT", field: "m" },
    });
    // A response nobody asked for is dropped silently, never run as a request.
    ws.send(JSON.stringify({ t: "res", id: "no-such-call", b: { m: "hello" } }));
    ws.send("{oops");
    expect(await next()).toMatchObject({
      t: "err",
      e: { code: "FLEETLINK_E_INVALID_ARGUMENT", field: "frame" },
    });
    ws.send(JSON.stringify({ t: "req", m: "x" }));
    expect(await next()).toMatchObject({ t: "err", e: { field: "id" } });
    ws.send(JSON.stringify({ t: "zzz" }));
    expect(await next()).toMatchObject({ t: "err", e: { field: "t" } });
    ws.send("[]");
    ws.send("1");
    ws.send("nope");
    expect(await closed).toBe(1008);
    expect(frames.filter((f) => f.t === "res").map((f) => f.id)).toEqual(["h"]);
  });

  test("stream - a node cannot reply to another node's instruction", async () => {
    const other = await hub.app.inject({
      method: "POST",
      url: "/v1/nodes/enroll",
      headers: { authorization: "Bearer enroll" },
      payload: { name: "n2" },
    });
    const otherId = other.json().node.id;
    await store.heartbeat(otherId);
    const [ins] = await store.pushInstructions(runId, [{ dst: otherId, method: "m", ttlMs: 60_000 }]);
    const { ws } = await connect(`${node.id}.${node.credential}`);
    const frames: { id?: string; e: { code: string } }[] = [];
    ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
    const answer = async (id: string) => {
      await expect.poll(() => frames.some((f) => f.id === id)).toBe(true);
      return frames.find((f) => f.id === id)!;
    };
    ws.send(JSON.stringify({ t: "req", id: "h", m: "hello", b: { inflight: [] } }));
    await answer("h");
    ws.send(JSON.stringify({ t: "req", id: "9", m: "reply", b: { id: newId(), runId, replyTo: ins!.id } }));
    expect((await answer("9")).e.code).toBe("FLEETLINK_E_NOT_ADDRESSEE");
    expect(await store.getReplies(runId, [ins!.id])).toEqual([]);
    ws.close();
  });
});
