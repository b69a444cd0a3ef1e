// The HTTP connector against a real hub: refusals become DialRefused (as the WebSocket upgrade's), a session's
// end becomes the transport's close with the hub's close code.
import { afterEach, describe, expect, test } from "vitest";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { isFleetlinkError } from "../../src/protocol/errors.ts";
import { newId } from "../../src/protocol/ids.ts";
import { Channel } from "../../src/stream/channel.ts";
import { httpConnector } from "../../src/stream/http-dial.ts";
import type { Transport } from "../../src/stream/transport.ts";
import { DialRefused } from "../../src/stream/ws-dial.ts";
import { ENROLL_TOKEN, startFleet, TOKEN } from "../helpers/fleet.ts";
import { enrollNode } from "../helpers/node-http.ts";

const connector = (auth: string) => httpConnector({ headers: () => ({ authorization: auth }), waitMs: 1000 });
const closed = (t: Transport) => new Promise<number>((r) => t.onClose((code) => r(code)));

describe("http dial", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  });
  const fleetOf = async (o: Parameters<typeof startFleet>[0] = {}) => {
    const f = await startFleet(o);
    cleanups.push(() => f.close());
    return f;
  };

  test("http dial - refusals at open reject with DialRefused carrying status and code (UNAUTHORIZED, NODE_PENDING)", async () => {
    const f = await fleetOf({ enrollApproval: "manual" });
    const n = await enrollNode(f.url, ENROLL_TOKEN, "waiting");
    const pending = await connector(n.auth)(f.url).catch((e) => e);
    expect(pending).toBeInstanceOf(DialRefused);
    expect(pending).toMatchObject({ status: 403, code: "FLEETLINK_E_NODE_PENDING" });
    const bad = await connector(`Bearer ${n.id}.wrong`)(f.url).catch((e) => e);
    expect(bad).toBeInstanceOf(DialRefused);
    expect(bad).toMatchObject({ status: 401, code: "FLEETLINK_E_UNAUTHORIZED" });
    const unknown = await connector(`Bearer ${newId()}.x`)(f.url).catch((e) => e);
    expect(unknown).toMatchObject({ status: 401, code: "FLEETLINK_E_UNAUTHORIZED" });
    // Nobody answering is not a refusal: the dialer treats it as a dead path.
    const port = Number(new URL(f.url).port);
    await f.hub.close();
    const down = await connector(n.auth)(`http://127.0.0.1:${port}`).catch((e) => e);
    expect(down).not.toBeInstanceOf(DialRefused);
    expect(isFleetlinkError(down, "STREAM_CLOSED")).toBe(true);
  });

  test("http dial - a session's end closes the transport with the hub's code: 4000 replaced, 4001 revoked", async () => {
    const f = await fleetOf();
    const n = await enrollNode(f.url, ENROLL_TOKEN, "ends");
    const hello = async (t: Transport) => {
      const ch = new Channel(t, { onRequest: () => ({ accepted: true }) });
      await ch.request("hello", { inflight: [] });
      return ch;
    };
    const first = await connector(n.auth)(f.url);
    const firstClosed = closed(first);
    const ch1 = await hello(first);
    const second = await connector(n.auth)(f.url);
    const secondClosed = closed(second);
    const ch2 = await hello(second);
    // The first one's parked poll learns it was replaced.
    expect(await firstClosed).toBe(CloseCode.replaced);
    expect(ch1.closeCode).toBe(CloseCode.replaced);
    // Unregistering the node revokes its session.
    const res = await fetch(`${f.url}/v1/nodes/${n.id}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(res.status).toBe(200);
    // Its next heartbeat finds out (renewals.ts), as on the stream.
    await ch2.request("heartbeat", {}).catch(() => {});
    expect(await secondClosed).toBe(CloseCode.revoked);
    const again = await connector(n.auth)(f.url).catch((e) => e);
    expect(again).toMatchObject({ status: 409, code: "FLEETLINK_E_NODE_UNREGISTERED" });
  });

  test("http dial - a hub that goes away closes the transport 1001; the answers to requests arrive as response frames", async () => {
    const f = await fleetOf();
    const n = await enrollNode(f.url, ENROLL_TOKEN, "away");
    const t = await connector(n.auth)(f.url);
    const ended = closed(t);
    const ch = new Channel(t, { onRequest: () => ({ accepted: true }) });
    const h = (await ch.request("hello", { inflight: [], heartbeatIntervalMs: 1000 })) as { nodeId: string };
    expect(h.nodeId).toBe(n.id);
    expect(await ch.request("heartbeat", {})).toHaveProperty("onlineUntil");
    const refused = await ch.request("progress", { ids: "x" }).catch((e) => e);
    expect(refused).toMatchObject({ code: "FLEETLINK_E_INVALID_ARGUMENT", field: "ids" });
    await f.hub.close();
    expect(await ended).toBe(CloseCode.goingAway);
  });
});
