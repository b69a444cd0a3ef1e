// The HTTP node API through a real hub over real sockets: the same delivery, leases, fencing and liveness as
// the stream, served by the same code.
import { afterEach, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { IncompleteCallError } from "../../src/coordinator/errors.ts";
import { createHub } from "../../src/hub/server.ts";
import { NodeAgent } from "../../src/node/agent.ts";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { openStore } from "../../src/store/open.ts";
import { ENROLL_TOKEN, startFleet, TOKEN } from "../helpers/fleet.ts";
import { enrollNode, openSession } from "../helpers/node-http.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const admin = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };

describe("http node", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  });
  const fleetOf = async (o: Parameters<typeof startFleet>[0] = {}) => {
    const f = await startFleet(o);
    cleanups.push(() => f.close());
    const run = async () =>
      (
        (await (
          await fetch(`${f.url}/v1/runs`, { method: "POST", headers: { authorization: admin.authorization } })
        ).json()) as { run: { id: string } }
      ).run.id;
    /** Pushes one instruction through the hub (so it is leased to a session here at once). */
    const push = async (runId: string, dst: string, method = "echo", payload: unknown = 1) => {
      const res = await fetch(`${f.url}/v1/runs/${runId}/instructions`, {
        method: "POST",
        headers: admin,
        body: JSON.stringify({ items: [{ dst, method, payload, ttlMs: 60_000 }] }),
      });
      expect(res.status).toBe(201);
      return ((await res.json()) as { instructions: { id: string }[] }).instructions[0]!.id;
    };
    const instruction = async (runId: string, id: string) => {
      const res = await fetch(`${f.url}/v1/runs/${runId}/instructions`, { headers: admin });
      const all = ((await res.json()) as { instructions: { id: string; state: string; attempts: number }[] })
        .instructions;
      return all.find((i) => i.id === id)!;
    };
    return { ...f, run, push, instruction };
  };

  test("http node - the API is in the OpenAPI document, with the node credential and its error codes", async () => {
    const f = await fleetOf();
    const doc = (await (await fetch(`${f.url}/openapi.json`)).json()) as {
      paths: Record<string, { post?: { security: unknown[]; "x-error-codes": string[] } }>;
    };
    for (const m of ["open", "poll", "close", "hello", "heartbeat", "progress", "reply", "leave"]) {
      const op = doc.paths[`/v1/node/${m}`]?.post;
      expect(op?.security, m).toEqual([{ nodeCredential: [] }]);
      if (m !== "open") expect(op!["x-error-codes"], m).toContain("FLEETLINK_E_SESSION_ENDED");
    }
    expect(doc.paths["/v1/node/poll"]!.post!["x-error-codes"]).toContain("FLEETLINK_E_RATE_LIMITED");
    expect(doc.paths["/v1/node/reply"]!.post!["x-error-codes"]).toContain("FLEETLINK_E_NOT_ADDRESSEE");
  });

  test("http node - an echo call round trips through a real hub to an agent on transport http", async () => {
    const f = await fleetOf();
    const a = await f.node("h1", { echo: (p) => p }, { transport: "http" });
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const cfg = run.configuration([a.nodeId!]);
    for (let i = 0; i < 5; i++) {
      const r = await cfg.call("echo", { i }, { quorum: "all", timeoutMs: 5000 });
      expect(r.replies.get(a.nodeId!)).toEqual({ i });
    }
    expect(a.connection.state).toBe("live");
  });

  test("http node - a parked poll returns as soon as an instruction is pushed, well before its wait", async () => {
    const f = await fleetOf();
    const n = await enrollNode(f.url, ENROLL_TOKEN, "parked");
    const s = await openSession(f.url, n.auth);
    const runId = await f.run();
    const t0 = Date.now();
    const polled = s.poll([], 20_000);
    await sleep(100);
    const id = await f.push(runId, n.id, "echo", { x: 1 });
    const a = await polled;
    const took = Date.now() - t0;
    expect(a.status).toBe(200);
    expect(a.body.instructions).toMatchObject([{ id, method: "echo", payload: { x: 1 }, attempts: 1 }]);
    expect(took).toBeLessThan(1500);
    const r = await s.call("reply", { id: crypto.randomUUID(), runId, replyTo: id, payload: "ok" });
    expect(r.body).toMatchObject({ ok: true, duplicate: false });
  });

  test("http node - an unacknowledged instruction comes again in the next poll and is not re-leased", async () => {
    const f = await fleetOf();
    const n = await enrollNode(f.url, ENROLL_TOKEN, "unacked");
    const s = await openSession(f.url, n.auth);
    const runId = await f.run();
    const id = await f.push(runId, n.id);
    const first = await s.poll([], 2000);
    expect((first.body.instructions as { id: string }[]).map((i) => i.id)).toEqual([id]);
    // No ack: the same instruction again, at once, with the same attempt.
    const t0 = Date.now();
    const again = await s.poll([], 2000);
    expect(Date.now() - t0).toBeLessThan(500);
    expect(again.body.instructions).toMatchObject([{ id, attempts: 1 }]);
    expect(await f.instruction(runId, id)).toMatchObject({ state: "leased", attempts: 1 });
    // Acknowledged: it is not sent again.
    const acked = await s.poll([id], 300);
    expect(acked.body.instructions).toEqual([]);
    expect(await f.instruction(runId, id)).toMatchObject({ state: "leased", attempts: 1 });
  });

  test("http node - progress extends the lease of a running instruction: no redelivery past several leases", async () => {
    const f = await fleetOf({ store: await openStore("memory:", { leaseMs: 300, maxAttempts: 2 }) });
    const n = await enrollNode(f.url, ENROLL_TOKEN, "progress");
    const s = await openSession(f.url, n.auth);
    expect(s.hello.leaseMs).toBe(300);
    const runId = await f.run();
    const id = await f.push(runId, n.id);
    expect((await s.poll([], 2000)).body.instructions).toMatchObject([{ id }]);
    // 1.2 s (four leases) of work, reporting progress every 100 ms and polling as a node does.
    const until = Date.now() + 1200;
    let acks = [id];
    while (Date.now() < until) {
      const p = await s.call("progress", { ids: [id] });
      expect(p.body).toEqual({ extended: [id] });
      const polled = await s.poll(acks, 100);
      acks = [];
      expect(polled.body.instructions).toEqual([]);
    }
    expect(await f.instruction(runId, id)).toMatchObject({ state: "leased", attempts: 1 });
    const r = await s.call("reply", { id: crypto.randomUUID(), runId, replyTo: id, payload: "done" });
    expect(r.body).toMatchObject({ ok: true, duplicate: false });
  });

  test("http node - a session that stops polling is dropped on the stream's schedule and its leases released", async () => {
    const f = await fleetOf({ pingIntervalMs: 200 });
    const n = await enrollNode(f.url, ENROLL_TOKEN, "vanish");
    const s = await openSession(f.url, n.auth);
    const runId = await f.run();
    const id = await f.push(runId, n.id);
    expect((await s.poll([], 2000)).body.instructions).toMatchObject([{ id }]);
    await s.poll([id], 0);
    expect(await f.instruction(runId, id)).toMatchObject({ state: "leased" });
    // Silent from now on: dropped within 1.5 ping intervals (300 ms), the lease given back, not left to expire.
    await expect.poll(async () => (await f.instruction(runId, id)).state, { timeout: 1000 }).toBe("pending");
    const late = await s.poll([], 0);
    expect(late.status).toBe(410);
    expect(late.body.error?.code).toBe("FLEETLINK_E_SESSION_ENDED");
    expect(late.body.close?.code).toBe(CloseCode.abnormal);
  });

  test("http node - a node that stops polling becomes NODE_UNAVAILABLE, as a silent stream does", async () => {
    const f = await fleetOf({ pingIntervalMs: 200 });
    const n = await enrollNode(f.url, ENROLL_TOKEN, "silent");
    await openSession(f.url, n.auth, { heartbeatIntervalMs: 200 });
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const t0 = Date.now();
    const err = await run
      .configuration([n.id])
      .call("echo", 1, { quorum: "all", timeoutMs: 10_000 })
      .catch((e) => e);
    expect(err).toBeInstanceOf(IncompleteCallError);
    expect(err.errors.get(n.id).code).toBe("FLEETLINK_E_NODE_UNAVAILABLE");
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  test("http node - a newer session or stream of the node ends the older one (410, close 4000)", async () => {
    const f = await fleetOf();
    const n = await enrollNode(f.url, ENROLL_TOKEN, "fenced");
    const first = await openSession(f.url, n.auth);
    const parked = first.poll([], 10_000);
    const second = await openSession(f.url, n.auth);
    const a = await parked;
    expect(a.status).toBe(410);
    expect(a.body.close?.code).toBe(CloseCode.replaced);
    expect((await first.call("heartbeat")).body.close?.code).toBe(CloseCode.replaced);
    // A WebSocket stream of the node replaces the HTTP session the same way.
    const ws = new WebSocket(`${f.url.replace("http", "ws")}/v1/nodes/stream`, {
      headers: { authorization: n.auth },
    });
    cleanups.push(async () => ws.close());
    await new Promise((r) => ws.once("open", r));
    const helloed = new Promise((r) => ws.once("message", r));
    ws.send(JSON.stringify({ t: "req", id: "h", m: "hello", b: { inflight: [] } }));
    await helloed;
    const b = await second.poll([], 0);
    expect(b.status).toBe(410);
    expect(b.body.close?.code).toBe(CloseCode.replaced);
  });

  test("http node - parked polls are bounded: a newer poll answers the older one empty; past the replica's limit → 429", async () => {
    const f = await fleetOf({ maxParkedPolls: 1 });
    const a = await openSession(f.url, (await enrollNode(f.url, ENROLL_TOKEN, "pa")).auth);
    const b = await openSession(f.url, (await enrollNode(f.url, ENROLL_TOKEN, "pb")).auth);
    const older = a.poll([], 10_000);
    await sleep(100);
    const t0 = Date.now();
    const newer = a.poll([], 300);
    expect(await older).toMatchObject({ status: 200, body: { instructions: [] } });
    expect(Date.now() - t0).toBeLessThan(250);
    await sleep(50);
    const refused = await b.poll([], 1000);
    expect(refused.status).toBe(429);
    expect(refused.body.error?.code).toBe("FLEETLINK_E_RATE_LIMITED");
    // Operators see it in the replica's gauges.
    const metrics = await (
      await fetch(`${f.url}/metrics`, { headers: { authorization: admin.authorization } })
    ).text();
    expect(metrics).toMatch(/^fleetlink_parked_polls\{replica="[^"]+"\} 1$/m);
    expect(metrics).toMatch(/^fleetlink_node_http_sessions\{replica="[^"]+"\} 2$/m);
    expect((await newer).status).toBe(200);
    // The slot is free again.
    expect((await b.poll([], 10)).status).toBe(200);
  });

  test("http node - leave: answered left, the node is offline at once and its session ends (410, close 1000)", async () => {
    const f = await fleetOf();
    const n = await enrollNode(f.url, ENROLL_TOKEN, "leaver");
    const s = await openSession(f.url, n.auth, { heartbeatIntervalMs: 5000 });
    expect(s.hello).toMatchObject({ protocol: 1, features: expect.arrayContaining(["http", "leave"]) });
    expect((await s.call("leave")).body).toEqual({ left: true });
    expect(await f.store.getNode(n.id)).toMatchObject({ status: "offline" });
    await expect.poll(async () => (await s.poll([], 0)).body.close?.code).toBe(CloseCode.normal);
  });

  test("http node - an agent on HTTP that stops mid-call says leave: the call ends NODE_UNAVAILABLE within about a second", async () => {
    const f = await fleetOf();
    let started!: () => void;
    const running = new Promise<void>((r) => {
      started = r;
    });
    const agent = await f.node(
      "http-stopper",
      {
        hang: () => {
          started();
          return new Promise(() => {});
        },
      },
      { heartbeatIntervalMs: 5000, transport: "http" },
    );
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const call = run
      .configuration([agent.nodeId!])
      .call("hang", null, { quorum: "all", timeoutMs: 20_000 })
      .catch((e: unknown) => e);
    await running;
    const t0 = Date.now();
    await agent.stop({ timeoutMs: 100 });
    const err = await call;
    expect(err).toBeInstanceOf(IncompleteCallError);
    expect((err as IncompleteCallError).errors.get(agent.nodeId!)?.code).toBe("FLEETLINK_E_NODE_UNAVAILABLE");
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(await f.store.getNode(agent.nodeId!)).toMatchObject({ status: "offline" });
  });

  test("http node - a hub that refuses the agent's protocol stops an agent on HTTP (UNSUPPORTED_PROTOCOL), no redial", async () => {
    const f = await fleetOf({ protocols: [2] });
    const failed = f.node("refused-http", { echo: (p) => p }, { transport: "http" });
    await expect(failed).rejects.toMatchObject({ code: "FLEETLINK_E_UNSUPPORTED_PROTOCOL" });
    // Long enough for several reconnect attempts: the session was opened once.
    await sleep(1500);
    const metrics = await (
      await fetch(`${f.url}/metrics`, { headers: { authorization: admin.authorization } })
    ).text();
    const opens = metrics
      .split("\n")
      .filter((l) => l.startsWith("fleetlink_http_requests_total") && l.includes('route="/v1/node/open"'))
      .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
    expect(opens).toBe(1);
  });

  test("http node - a client that goes away while parked frees its slot; its instructions stay queued for the next poll", async () => {
    const f = await fleetOf({ maxParkedPolls: 1 });
    const n = await enrollNode(f.url, ENROLL_TOKEN, "gone");
    const a = await openSession(f.url, n.auth);
    const b = await openSession(f.url, (await enrollNode(f.url, ENROLL_TOKEN, "other")).auth);
    const abort = new AbortController();
    const parked = a.poll([], 10_000, { signal: abort.signal }).catch((e: Error) => e.name);
    await sleep(100);
    abort.abort();
    expect(await parked).toBe("AbortError");
    // b parks (it needs the one slot) and is answered after its wait, not refused.
    await expect.poll(async () => (await b.poll([], 50)).status).toBe(200);
    const runId = await f.run();
    const id = await f.push(runId, n.id);
    await sleep(100);
    expect((await a.poll([], 1000)).body.instructions).toMatchObject([{ id }]);
  });

  test("http node - an idle agent on HTTP polls about once per heartbeat interval, not on every quarter-interval probe", async () => {
    const f = await fleetOf();
    const polls = async () => {
      const res = await f.hub.app.inject({
        method: "GET",
        url: "/metrics",
        headers: { authorization: admin.authorization },
      });
      return [
        ...res.body.matchAll(/^fleetlink_http_requests_total\{[^}]*route="\/v1\/node\/poll"[^}]*\} (\d+)/gm),
      ].reduce((n, m) => n + Number(m[1]), 0);
    };
    const agent = new NodeAgent({
      hubs: [f.url],
      name: "idle",
      handlers: {},
      enrollToken: ENROLL_TOKEN,
      heartbeatIntervalMs: 1000,
      transport: "http",
    });
    cleanups.push(() => agent.stop({ timeoutMs: 100 }));
    await agent.start();
    await sleep(500);
    const before = await polls();
    await sleep(4000);
    // Each answered poll is counted; heartbeats answer every second, so the path is probed (a fresh poll) about
    // once per interval: 4 here. Probing on the stream's quarter-interval rule made it 8.
    const n = (await polls()) - before;
    expect(n).toBeGreaterThanOrEqual(2);
    expect(n).toBeLessThanOrEqual(6);
    expect(agent.state.state).toBe("online");
  });

  test("http node - a handle this replica does not know gets 410 close 1001; after a hub restart the agent comes back by itself", async () => {
    const f = await fleetOf();
    const n = await enrollNode(f.url, ENROLL_TOKEN, "restart");
    const s = await openSession(f.url, n.auth);
    // Another replica of the same store never had this session.
    const other = createHub({ store: f.store, token: TOKEN, enrollToken: ENROLL_TOKEN });
    const otherUrl = await other.listen();
    cleanups.push(() => other.close());
    const unknown = await fetch(`${otherUrl}/v1/node/poll`, {
      method: "POST",
      headers: { authorization: n.auth, "content-type": "application/json" },
      body: JSON.stringify({ session: s.session, waitMs: 0 }),
    });
    expect(unknown.status).toBe(410);
    expect(((await unknown.json()) as { close: { code: number } }).close.code).toBe(CloseCode.goingAway);

    // An agent on HTTP whose hub restarts (same port, same store) comes back and serves calls again.
    const port = Number(new URL(otherUrl).port);
    const agent = new NodeAgent({
      hubs: [otherUrl],
      name: "agent-restart",
      enrollToken: ENROLL_TOKEN,
      transport: "http",
      heartbeatIntervalMs: 1000,
      handlers: { echo: (p) => p },
    });
    await agent.start();
    cleanups.push(() => agent.stop({ timeoutMs: 200 }));
    await other.close();
    const again = createHub({ store: f.store, token: TOKEN, enrollToken: ENROLL_TOKEN });
    await again.listen({ port });
    cleanups.push(() => again.close());
    await expect.poll(() => agent.state.state, { timeout: 5000 }).toBe("online");
    const fleet = await f.fleet([otherUrl]);
    const run = await fleet.createRun();
    const r = await run
      .configuration([agent.nodeId!])
      .call("echo", "back", { quorum: "all", timeoutMs: 5000 });
    expect(r.replies.get(agent.nodeId!)).toBe("back");
  });
});
