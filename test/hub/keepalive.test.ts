// Dead-peer detection on the hub: a silent socket is pinged and dropped within 1.5 ping intervals; a peer that
// keeps talking (node agents ping on their own) is never pinged by the hub.
import { afterEach, expect, test } from "vitest";
import WebSocket from "ws";
import { ENROLL_TOKEN, startFleet } from "../helpers/fleet.ts";

const PING = 400;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const nodeSocket = async (url: string, name: string) => {
  const r = await fetch(`${url}/v1/nodes/enroll`, {
    method: "POST",
    headers: { authorization: `Bearer ${ENROLL_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  const { node, credential } = (await r.json()) as { node: { id: string }; credential: string };
  // autoPong off: this peer answers nothing, as a crashed host behind a live NAT would.
  const ws = new WebSocket(`${url.replace("http", "ws")}/v1/nodes/stream`, {
    headers: { authorization: `Bearer ${node.id}.${credential}` },
    autoPong: false,
  });
  await new Promise((res, rej) => ws.once("open", res).once("error", rej));
  cleanups.push(async () => ws.terminate());
  return ws;
};

test("keepalive - a silent peer is pinged, then dropped within 1.5 ping intervals; a talking one is never pinged", async () => {
  const f = await startFleet({ pingIntervalMs: PING, helloTimeoutMs: 60_000 });
  cleanups.push(() => f.close());
  const silent = await nodeSocket(f.url, "silent");
  const talker = await nodeSocket(f.url, "talker");
  let pingsToTalker = 0;
  talker.on("ping", () => pingsToTalker++);
  const chatter = setInterval(() => talker.ping(), PING / 4);
  cleanups.push(async () => clearInterval(chatter));
  let pingedAt = 0;
  silent.on("ping", () => {
    pingedAt ||= Date.now();
  });
  const t0 = Date.now();
  await new Promise((r) => silent.once("close", r));
  const closedAfter = Date.now() - t0;
  expect(pingedAt - t0).toBeGreaterThanOrEqual(PING * 0.5);
  expect(closedAfter).toBeGreaterThan(pingedAt - t0);
  expect(closedAfter).toBeLessThan(PING * 1.5 + 250);
  await new Promise((r) => setTimeout(r, PING * 2));
  expect(talker.readyState).toBe(WebSocket.OPEN);
  expect(pingsToTalker).toBe(0);
});

test("keepalive - a node that heartbeats less often than the hub pings is judged by its heartbeats: never pinged between them, dropped once one is late", async () => {
  const f = await startFleet({ pingIntervalMs: PING, helloTimeoutMs: 60_000 });
  cleanups.push(() => f.close());
  const INTERVAL = PING * 3;
  const req = (ws: WebSocket, m: string, b: object) =>
    ws.send(JSON.stringify({ t: "req", id: crypto.randomUUID(), m, b }));
  const steady = await nodeSocket(f.url, "steady");
  const quiet = await nodeSocket(f.url, "quiet");
  let pingsToSteady = 0;
  steady.on("ping", () => pingsToSteady++);
  for (const ws of [steady, quiet])
    req(ws, "hello", { inflight: [], heartbeatIntervalMs: INTERVAL, protocol: 1 });
  const beats = setInterval(
    () => req(steady, "heartbeat", { heartbeatIntervalMs: INTERVAL }),
    INTERVAL * 0.8,
  );
  cleanups.push(async () => clearInterval(beats));
  let quietPinged = 0;
  quiet.on("ping", () => {
    quietPinged ||= Date.now();
  });
  const t0 = Date.now();
  await new Promise((r) => quiet.once("close", r));
  const closedAfter = Date.now() - t0;
  // Not pinged at the hub's own interval, but once 1.1 intervals passed; dropped by 1.25 intervals (+ a check).
  expect(quietPinged - t0).toBeGreaterThanOrEqual(INTERVAL);
  expect(closedAfter).toBeLessThan(INTERVAL * 1.25 + PING / 4 + 250);
  await new Promise((r) => setTimeout(r, INTERVAL));
  expect(steady.readyState).toBe(WebSocket.OPEN);
  expect(pingsToSteady).toBe(0);
});
