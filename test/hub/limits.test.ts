// Every resource a peer can consume has a limit, and reaching it ends only that peer's request or stream.
import net from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { MAX_TTL_MS } from "../../src/protocol/limits.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

const admin = { authorization: `Bearer ${TOKEN}` };

describe("limits", () => {
  let f: TestFleet;
  afterEach(async () => {
    await f.close();
  });

  const enroll = async (name: string) => {
    const res = await f.hub.app.inject({
      method: "POST",
      url: "/v1/nodes/enroll",
      headers: { authorization: `Bearer ${ENROLL_TOKEN}` },
      payload: { name },
    });
    return { id: res.json().node.id as string, credential: res.json().credential as string };
  };
  const dial = (n: { id: string; credential: string }) =>
    new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(`${f.url.replace("http", "ws")}/v1/nodes/stream`, {
        headers: { authorization: `Bearer ${n.id}.${n.credential}` },
      });
      ws.on("open", () => resolve(ws));
      ws.on("error", reject);
    });
  const closeCode = (ws: WebSocket) =>
    new Promise<number>((r) => {
      if (ws.readyState === ws.CLOSED) r(-1);
      ws.on("close", (c) => r(c));
    });

  test("streams - one credential holds at most one arriving stream: dialling 50 times leaves one open", async () => {
    f = await startFleet();
    const n = await enroll("dialler");
    const socks: WebSocket[] = [];
    for (let i = 0; i < 50; i++) socks.push(await dial(n));
    await expect.poll(() => socks.filter((s) => s.readyState === s.OPEN).length, { timeout: 3000 }).toBe(1);
    expect(socks[49]!.readyState).toBe(socks[49]!.OPEN);
    for (const s of socks) s.terminate();
  });

  test("streams - a stream that never says hello is closed", async () => {
    f = await startFleet({ helloTimeoutMs: 300 });
    const ws = await dial(await enroll("silent"));
    const t0 = Date.now();
    expect(await closeCode(ws)).toBe(CloseCode.policy);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  test("streams - a node that stops reading is disconnected as a slow consumer and hub memory stays bounded", async () => {
    f = await startFleet({ maxBufferedBytes: 4 * 1024 * 1024 });
    const n = await enroll("sloth");
    const ws = await dial(n);
    await new Promise<void>((resolve) => {
      ws.once("message", () => resolve());
      ws.send(JSON.stringify({ t: "req", id: "h", m: "hello", b: { inflight: [] } }));
    });
    // Stop reading: the kernel buffers fill, then the hub's send queue grows.
    (ws as unknown as { _socket: net.Socket })._socket.pause();
    const closed = new Promise<number>((r) => ws.on("close", (c) => r(c)));
    const run = await f.store.createRun();
    const rss0 = process.memoryUsage().rss;
    const payload = "z".repeat(1024 * 1024);
    for (let i = 0; i < 200; i++) {
      await f.store.pushInstructions(run.id, [
        { dst: n.id, method: "m", ttlMs: 60_000, payload: new TextEncoder().encode(JSON.stringify(payload)) },
      ]);
      f.hub.nodes.wake(n.id);
      if (!f.hub.nodes.connectedIds().includes(n.id)) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    await expect.poll(() => f.hub.nodes.connectedIds().includes(n.id), { timeout: 5000 }).toBe(false);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(150 * 1024 * 1024);
    (ws as unknown as { _socket: net.Socket })._socket.resume();
    expect([CloseCode.slowConsumer, CloseCode.abnormal]).toContain(await closed);
  });

  test("http - no body is read before authentication: a big unauthenticated body is refused with 401 at once", async () => {
    f = await startFleet();
    const res = await fetch(`${f.url}/v1/runs/00000000-0000-7000-8000-000000000000/instructions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer wrong" },
      body: JSON.stringify({ items: [{ dst: 1, method: 2, ttlMs: "x", payload: "p".repeat(7_000_000) }] }),
    });
    expect(res.status).toBe(401);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("FLEETLINK_E_UNAUTHORIZED");
    expect(body.error.message).not.toMatch(/ttlMs|schema|items/);
  });

  test("http - a client that sends its body slowly is cut off after the request timeout", async () => {
    f = await startFleet({ requestTimeoutMs: 500 });
    const port = Number(new URL(f.url).port);
    const sock = net.connect(port, "127.0.0.1");
    sock.on("error", () => {});
    await new Promise((r) => sock.once("connect", r));
    sock.write(
      `POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{`,
    );
    const t0 = Date.now();
    let answer = "";
    sock.on("data", (d) => {
      answer += d;
    });
    await new Promise((r) => sock.once("close", r));
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(answer).toMatch(/^HTTP\/1.1 408/);
  });

  test("http - TTLs, nesting and numbers beyond their limits get 400 naming the field, never a 500", async () => {
    f = await startFleet();
    const n = await enroll("target");
    const run = await f.store.createRun();
    const DEEP = "__deep__";
    // Built as text: JSON.stringify itself cannot encode 10,000 levels.
    const deepText = `${'{"d":'.repeat(10_000)}1${"}".repeat(10_000)}`;
    const push = (item: Record<string, unknown>) =>
      f.hub.app.inject({
        method: "POST",
        url: `/v1/runs/${run.id}/instructions`,
        headers: { ...admin, "content-type": "application/json" },
        payload: JSON.stringify({ items: [{ dst: n.id, method: "m", ttlMs: 1000, ...item }] }).replace(
          `"${DEEP}"`,
          deepText,
        ),
      });
    const deep = DEEP;
    const cases: [Record<string, unknown>, string][] = [
      [{ ttlMs: MAX_TTL_MS + 1 }, "body.items.0.ttlMs"],
      [{ ttlMs: 2 ** 53 - 1 }, "body.items.0.ttlMs"],
      [{ holdWhileOffline: true, ttlMs: 9e15 }, "body.items.0.ttlMs"],
      [{ maxAttempts: 1e9 }, "body.items.0.maxAttempts"],
      [{ payload: deep }, "items[0].payload"],
    ];
    for (const [item, field] of cases) {
      const res = await push(item);
      expect({ field, status: res.statusCode }).toEqual({ field, status: 400 });
      expect(res.json().error.field).toBe(field);
    }
    expect((await f.store.stats()).instructions.pending).toBe(0);
  });

  test("http - unknown runs are 404 on every run route; Fastify's own errors come in the fleetlink shape", async () => {
    f = await startFleet();
    const ghost = "01900000-0000-7000-8000-000000000000";
    for (const [url, payload] of [
      [`/v1/runs/${ghost}/instructions/query`, { ids: [] }],
      [`/v1/runs/${ghost}/instructions/withdraw`, { ids: [] }],
      [`/v1/runs/${ghost}/replies/query`, { instructionIds: [] }],
      [`/v1/runs/${ghost}/replies/claim`, {}],
    ] as const) {
      const res = await f.hub.app.inject({ method: "POST", url, headers: admin, payload });
      expect({ url, status: res.statusCode }).toEqual({ url, status: 404 });
      expect(res.json().error.code).toBe("FLEETLINK_E_RUN_NOT_FOUND");
    }
    const shapes = [
      await f.hub.app.inject({ method: "GET", url: `/v1/runs/${"x".repeat(5000)}`, headers: admin }),
      await f.hub.app.inject({ method: "GET", url: "/v1/runs/%E0%A4%A", headers: admin }),
      await f.hub.app.inject({
        method: "POST",
        url: "/v1/runs",
        headers: { ...admin, "content-type": "text/plain" },
        payload: "hi",
      }),
      await f.hub.app.inject({
        method: "POST",
        url: "/v1/runs",
        headers: { ...admin, "content-type": "application/json" },
        payload: "{",
      }),
      await f.hub.app.inject({ method: "POST", url: "/v1/runs", headers: admin, payload: { id: "x" } }),
    ];
    for (const res of shapes) {
      expect(res.statusCode).toBeGreaterThanOrEqual(400);
      expect(res.statusCode).toBeLessThan(500);
      expect(res.json().error.code).toMatch(/^FLEETLINK_E_/);
    }
    expect((await f.store.stats()).runs.pending).toBe(0);
    // And a POST /v1/runs with no body still creates a run (the SDK sends none).
    const ok = await f.hub.app.inject({ method: "POST", url: "/v1/runs", headers: admin });
    expect(ok.statusCode).toBe(201);
  });

  test("http - malformed HTTP on a raw socket gets a fleetlink-shaped 400 and the hub keeps serving", async () => {
    f = await startFleet();
    const port = Number(new URL(f.url).port);
    const answer = await new Promise<string>((resolve) => {
      const sock = net.connect(port, "127.0.0.1", () => sock.write("GARBAGE\r\n\r\n"));
      let got = "";
      sock.on("data", (d) => {
        got += d;
      });
      sock.on("close", () => resolve(got));
      sock.on("error", () => {});
    });
    expect(answer).toMatch(/^HTTP\/1.1 400/);
    expect(answer).toMatch(/FLEETLINK_E_INVALID_ARGUMENT/);
    expect((await fetch(`${f.url}/healthz`)).status).toBe(200);
  });
});
