// WebSocket protocol violations and hostile peers against a hub running as a real OS process: each must end
// the offending connection only, never the process.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { NodeAgent } from "../../src/node/agent.ts";
import { newId } from "../../src/protocol/ids.ts";
import { type Proc, startHubProc } from "../helpers/procs.ts";
import { encodeFrame, Op, openRaw, type RawWs, requestThenReset, violations } from "../helpers/rawws.ts";

const ADMIN = "admin-token-ws-protocol";
const ENROLL = "enroll-token-ws-protocol";
const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const within = <T>(ms: number, p: Promise<T>, what: string): Promise<T> => {
  let t: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`${what} within ${ms} ms`)), ms))),
  ]);
};

/** One hub process for a describe block; restarted (same database) if a case killed it, so every case is judged on its own. */
const hubFixture = () => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-wsproto-"));
  const db = `sqlite:${join(dir, "hub.db")}`;
  const h = {
    dir,
    proc: undefined as Proc | undefined,
    url: "",
    stderrBytes: 0,
    async start() {
      h.proc = await startHubProc(db, ADMIN, ["--enroll-token", ENROLL, "--log-level", "warn"]);
      h.url = h.proc.value;
      h.proc.child.stderr!.on("data", (d: Buffer) => {
        h.stderrBytes += d.length;
      });
    },
    alive: () => h.proc !== undefined && h.proc.child.exitCode === null && h.proc.child.signalCode === null,
    /** Why the hub process ended, with the end of its output. */
    death: () =>
      `hub exited (${h.proc?.child.exitCode ?? h.proc?.child.signalCode}):\n${h.proc?.output().slice(-2000)}`,
    async ensureRunning() {
      if (!h.alive()) await h.start();
    },
    async stop() {
      await h.proc?.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
};
type HubFixture = ReturnType<typeof hubFixture>;

const enroll = async (url: string, name: string): Promise<{ id: string; credential: string }> => {
  const r = await fetch(`${url}/v1/nodes/enroll`, {
    method: "POST",
    headers: { authorization: `Bearer ${ENROLL}`, "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  if (r.status !== 201) throw new Error(`enroll: ${r.status} ${await r.text()}`);
  const b = (await r.json()) as { node: { id: string }; credential: string };
  return { id: b.node.id, credential: b.credential };
};

const createRun = async (url: string): Promise<string> => {
  const r = await fetch(`${url}/v1/runs`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    body: "{}",
  });
  if (r.status !== 201) throw new Error(`create run: ${r.status} ${await r.text()}`);
  return ((await r.json()) as { run: { id: string } }).run.id;
};

/** The hub process is still running and answers /healthz. */
const expectServing = async (h: HubFixture) => {
  await sleep(100); // a crash caused by the last frame needs a moment to show
  expect(h.alive(), h.death()).toBe(true);
  const r = await fetch(`${h.url}/healthz`);
  expect(r.status).toBe(200);
};

/** A real node agent on a fresh connection completes a real call from a real coordinator. */
const expectRealCall = async (h: HubFixture) => {
  await expectServing(h);
  const agent = new NodeAgent({
    hubs: [h.url],
    name: "real-node",
    enrollToken: ENROLL,
    handlers: { echo: (p) => p },
    heartbeatIntervalMs: 1000,
  });
  await within(10_000, agent.start(), "the real node did not get online");
  const fleet = await Fleet.connect({ hub: h.url, token: ADMIN });
  try {
    const run = await fleet.createRun();
    const cfg = run.configuration([agent.nodeId!]);
    const res = await cfg.call("echo", { still: "serving" }, { quorum: "all", timeoutMs: 5000 });
    expect(res.replies.get(agent.nodeId!)).toEqual({ still: "serving" });
  } finally {
    await fleet.close();
    await agent.stop({ timeoutMs: 1000 });
  }
};

const hello = (id = newId()) => JSON.stringify({ t: "req", id, m: "hello", b: { inflight: [] } });

/** Opens a node stream and completes hello, so violations arrive on an established session. */
const nodeSession = async (h: HubFixture, node: { id: string; credential: string }): Promise<RawWs> => {
  const ws = await openRaw(h.url, "/v1/nodes/stream", `${node.id}.${node.credential}`);
  const id = newId();
  ws.send({ opcode: Op.text, payload: hello(id) });
  await ws.next((f) => f.opcode === Op.text && f.payload.toString().includes(id));
  return ws;
};

const expectClosedWith = async (ws: RawWs, code: number) => {
  const end = await ws.ended(2000);
  ws.destroy();
  expect(end.tcpClosed, "the hub should end the connection within 2 s").toBe(true);
  expect(end.code).toBe(code);
};

describe("node stream - protocol violations end the connection, not the hub", () => {
  const h = hubFixture();
  let node: { id: string; credential: string };
  beforeAll(async () => {
    await h.start();
    node = await enroll(h.url, "raw-node");
  });
  beforeEach(() => h.ensureRunning());
  afterAll(() => h.stop());

  for (const v of violations)
    test(`node stream - ${v.name} → close ${v.code}`, async () => {
      const ws = await nodeSession(h, node);
      for (const f of v.frames) ws.send(f);
      await expectClosedWith(ws, v.code);
      await expectServing(h);
    });

  test("node stream - a reply frame over the frame limit (9 MiB of valid JSON) → 1009, and the node can reconnect", async () => {
    const ws = await nodeSession(h, node);
    const frame = JSON.stringify({
      t: "req",
      id: newId(),
      m: "reply",
      b: { id: newId(), runId: newId(), replyTo: newId(), payload: "x".repeat(9 * MiB) },
    });
    ws.send({ opcode: Op.text, payload: frame });
    await expectClosedWith(ws, 1009);
    await expectServing(h);
    const again = await nodeSession(h, node);
    again.destroy();
  });

  test("node stream - 200 upgrades with bad, missing or garbage credentials reset 0-5 ms after the request: the hub survives", async () => {
    const auths = [
      undefined,
      "Bearer",
      "Bearer ",
      "Basic Zm9vOmJhcg==",
      "Bearer garbage",
      `Bearer ${node.id}`,
      `Bearer ${node.id}.`,
      `Bearer ${node.id}.wrong-credential`,
      `Bearer ${newId()}.${node.credential}`,
      `Bearer not-a-uuid.${node.credential}`,
      `Bearer ${"x".repeat(8000)}`,
      `Bearer ${ADMIN}`,
      `Bearer ${ENROLL}`,
      `Bearer ${node.id}.${node.credential}`, // a good one too: the reset races the store lookup
    ];
    const requests = Array.from({ length: 200 }, (_, i) => {
      const auth = auths[i % auths.length];
      const lines = [
        "GET /v1/nodes/stream HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Key: ${Buffer.from(newId().slice(0, 16)).toString("base64")}`,
        "Sec-WebSocket-Version: 13",
        ...(auth === undefined ? [] : [`Authorization: ${auth}`]),
      ];
      return { raw: `${lines.join("\r\n")}\r\n\r\n`, delay: i % 6 };
    });
    for (let i = 0; i < requests.length; i += 20)
      await Promise.all(requests.slice(i, i + 20).map((r) => requestThenReset(h.url, r.raw, r.delay)));
    await sleep(500);
    await expectServing(h);
  });

  test("node stream - 100 garbage text frames (not JSON, arrays, unknown t, 1 MiB err messages): the hub survives and its log stays small", async () => {
    const before = h.stderrBytes;
    const big = "E".repeat(MiB);
    const garbage: string[] = [];
    for (let i = 0; i < 100; i++) {
      switch (i % 5) {
        case 0:
          garbage.push(`not json ${"#".repeat(i * 100)}`);
          break;
        case 1:
          garbage.push(JSON.stringify([i, "array", { t: "req" }]));
          break;
        case 2:
          garbage.push(JSON.stringify({ t: `unknown-${"t".repeat(10_000)}`, id: newId() }));
          break;
        case 3:
          garbage.push(
            JSON.stringify({ t: "err", e: { code: `FLEETLINK_E_${"C".repeat(50_000)}`, message: big } }),
          );
          break;
        default:
          garbage.push(JSON.stringify({ t: "err", e: { code: "FLEETLINK_E_HANDLER_FAILED", message: big } }));
      }
    }
    // The hub disconnects a peer that keeps sending garbage: reconnect and go on until all 100 are sent.
    let ws = await nodeSession(h, node);
    for (const g of garbage) {
      if (ws.socket.destroyed || ws.frames.some((f) => f.opcode === Op.close)) {
        ws.destroy();
        ws = await nodeSession(h, node);
      }
      ws.send({ opcode: Op.text, payload: g });
      await sleep(5);
    }
    await sleep(500);
    ws.destroy();
    await expectServing(h);
    const logged = h.stderrBytes - before;
    expect(logged, `hub wrote ${logged} bytes to stderr for 100 garbage frames`).toBeLessThan(100_000);
  });

  test("node stream - after all of the above a real node completes a real call", async () => {
    await expectRealCall(h);
  });
});

describe("run stream - protocol violations end the connection, not the hub", () => {
  const h = hubFixture();
  let runId: string;
  beforeAll(async () => {
    await h.start();
    runId = await createRun(h.url);
  });
  beforeEach(() => h.ensureRunning());
  afterAll(() => h.stop());

  const picked = violations.filter((v) =>
    [
      "a frame header announcing 9 MiB (beyond the frame limit)",
      "invalid UTF-8 in a text frame",
      "an unmasked client frame",
      "reserved control opcode 0xB",
      "a close frame with code 999",
      "a stray continuation frame",
    ].includes(v.name),
  );
  for (const v of picked)
    test(`run stream - ${v.name} → close ${v.code}`, async () => {
      const ws = await openRaw(h.url, `/v1/runs/${runId}/stream`, ADMIN);
      await sleep(20);
      for (const f of v.frames) ws.write(encodeFrame(f));
      await expectClosedWith(ws, v.code);
      await expectServing(h);
    });

  test("run stream - a 9 MiB text frame → 1009", async () => {
    const ws = await openRaw(h.url, `/v1/runs/${runId}/stream`, ADMIN);
    ws.send({ opcode: Op.text, payload: JSON.stringify({ t: "evt", m: "x", b: "y".repeat(9 * MiB) }) });
    await expectClosedWith(ws, 1009);
    await expectServing(h);
  });

  test("run stream - after all of the above a real node completes a real call", async () => {
    await expectRealCall(h);
  });
});
