// The version handshake over real sockets: a hub refuses a hello naming a protocol it does not speak (an error
// frame naming both versions, then close 4002, nothing recorded), accepts a hello without a version as
// protocol 1, answers its versions, features and version, and records the agent for GET /v1/nodes and
// `fleetlink nodes list`. The TypeScript agent refused by a hub stops instead of redialling.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { HUB_FEATURES, TS_AGENT_NAME } from "../../src/protocol/version.ts";
import { cli } from "../cli/cli-run.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

const VERSION = (
  JSON.parse(readFileSync(join(import.meta.dirname, "../../package.json"), "utf8")) as { version: string }
).version;

let f: TestFleet | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

interface Frame {
  t: string;
  id?: string;
  b?: Record<string, unknown>;
  e?: { code: string; message: string };
}

/** Enrolls a node and opens its stream as a bare WebSocket: frames in, frames out, the close code. */
const rawNode = async (url: string, name: string) => {
  const res = await fetch(`${url}/v1/nodes/enroll`, {
    method: "POST",
    headers: { authorization: `Bearer ${ENROLL_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  expect(res.status).toBe(201);
  const body = (await res.json()) as { node: { id: string }; credential: string };
  const nodeId = body.node.id;
  const credential = body.credential;
  const ws = new WebSocket(`${url.replace(/^http/, "ws")}/v1/nodes/stream`, {
    headers: { authorization: `Bearer ${nodeId}.${credential}` },
  });
  const frames: Frame[] = [];
  ws.on("message", (d) => frames.push(JSON.parse(String(d)) as Frame));
  const closed = new Promise<number>((r) => ws.on("close", (code) => r(code)));
  await new Promise<void>((ok, fail) => {
    ws.once("open", () => ok());
    ws.once("error", fail);
  });
  const request = async (id: string, m: string, b: unknown): Promise<Frame> => {
    ws.send(JSON.stringify({ t: "req", id, m, b }));
    await expect.poll(() => frames.some((x) => x.id === id)).toBe(true);
    return frames.find((x) => x.id === id)!;
  };
  return { nodeId, ws, frames, closed, request };
};

describe("versioning", () => {
  test("versioning - a hello naming protocol 2 on a hub of [1] gets UNSUPPORTED_PROTOCOL naming both, then close 4002, and no session", async () => {
    f = await startFleet();
    const n = await rawNode(f.url, "future");
    const answer = await n.request("h", "hello", {
      protocol: 2,
      agent: { name: "fleetlink-py", version: "9.0.0" },
    });
    expect(answer.t).toBe("err");
    expect(answer.e?.code).toBe("FLEETLINK_E_UNSUPPORTED_PROTOCOL");
    expect(answer.e?.message).toBe("node speaks protocol 2; this hub speaks 1");
    expect(await n.closed).toBe(CloseCode.unsupportedProtocol);
    // Nothing about the node changed: no session, not online, no agent recorded.
    expect((await f.store.getSessions([n.nodeId])).get(n.nodeId)).toBeNull();
    expect(await f.store.getNode(n.nodeId)).toMatchObject({ status: "registered", agent: null });
    expect(f.hub.nodes.connected).toBe(0);
  });

  test("versioning - a hello without protocol is protocol 1 and accepted; the answer names the hub's protocols, features, version and ping interval", async () => {
    f = await startFleet({ pingIntervalMs: 4000 });
    const n = await rawNode(f.url, "old-node");
    const answer = await n.request("h", "hello", { inflight: [] });
    expect(answer.t).toBe("res");
    expect(answer.b).toMatchObject({
      nodeId: n.nodeId,
      protocol: 1,
      protocols: [1],
      // This fleet serves no blobs: those two are announced only by a hub that does (test/hub/blobs.test.ts).
      features: HUB_FEATURES.filter((f) => f !== "blobs" && f !== "blob-urls"),
      hub: { version: VERSION },
      pingIntervalMs: 4000,
    });
    // Named no software: recorded as none.
    expect(await f.store.getNode(n.nodeId)).toMatchObject({ status: "online", agent: null });
    n.ws.close();
  });

  test("versioning - a hub that speaks only protocol 2 refuses the TypeScript agent, which stops in rejected instead of redialling", async () => {
    f = await startFleet({ protocols: [2] });
    let upgrades = 0;
    f.hub.app.server.on("upgrade", () => upgrades++);
    const failed = f.node("refused", { echo: (p) => p });
    await expect(failed).rejects.toMatchObject({
      code: "FLEETLINK_E_UNSUPPORTED_PROTOCOL",
      message: expect.stringMatching(
        /refuses this node's protocol 1.*node speaks protocol 1; this hub speaks 2/,
      ),
    });
    // Long enough for several reconnect attempts (the first backoff is well under a second).
    await new Promise((r) => setTimeout(r, 1500));
    expect(upgrades).toBe(1);
  });

  test("versioning - the agent's name and version appear in GET /v1/nodes and in fleetlink nodes list", async () => {
    f = await startFleet();
    const agent = await f.node("worker-7", { echo: (p) => p });
    const res = await fetch(`${f.url}/v1/nodes`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const { nodes } = (await res.json()) as { nodes: { id: string; agent: unknown }[] };
    expect(nodes.find((x) => x.id === agent.nodeId)?.agent).toEqual({
      name: TS_AGENT_NAME,
      version: VERSION,
      protocol: 1,
    });
    const list = await cli(["nodes", "list", "--hub", f.url, "--token", TOKEN]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/\bAGENT\b/);
    expect(list.stdout).toMatch(new RegExp(`worker-7\\s+online.*${TS_AGENT_NAME}/${VERSION} \\(p1\\)`));
    const show = await cli(["nodes", "show", "worker-7", "--hub", f.url, "--token", TOKEN]);
    expect(show.stdout).toMatch(new RegExp(`agent:\\s+${TS_AGENT_NAME}/${VERSION} \\(p1\\)`));
  });
});
