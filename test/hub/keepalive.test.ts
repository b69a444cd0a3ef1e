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
