// The refusal budget holds on the HTTP node API too: its sessions are served by the same Channel as streams.
import { afterAll, beforeAll, expect, test } from "vitest";
import { createHub, type Hub } from "../../src/hub/server.ts";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { openStore } from "../../src/store/open.ts";
import { enrollNode, openSession } from "../helpers/node-http.ts";

let hub: Hub;
let url: string;
beforeAll(async () => {
  const store = await openStore("memory:");
  hub = createHub({ store, token: "t0ken", enrollToken: "enroll", sweepIntervalMs: 50 });
  url = await hub.listen();
});
afterAll(async () => {
  await hub.close();
});

test("http node - a session whose requests are refused more than 100 times within 10 s ends with close 1008; another node's session goes on", async () => {
  const bad = await openSession(url, (await enrollNode(url, "enroll", "bad")).auth);
  const good = await openSession(url, (await enrollNode(url, "enroll", "good")).auth);
  const statuses: number[] = [];
  for (let i = 0; i < 100; i++) statuses.push((await bad.call("progress", { ids: 5 })).status);
  expect(new Set(statuses)).toEqual(new Set([400]));
  expect((await bad.call("heartbeat")).status).toBe(200);
  await bad.call("progress", { ids: 5 });
  const after = await bad.call("heartbeat");
  expect(after.status).toBe(410);
  expect(after.body.close?.code).toBe(CloseCode.policy);
  expect((await good.call("heartbeat")).status).toBe(200);
});
