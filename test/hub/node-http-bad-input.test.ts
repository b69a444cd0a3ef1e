// Everything the hub refuses on the node stream is refused the same way on the HTTP node API (twins of
// bad-input.test.ts's stream tests), with the HTTP status of the error's code.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createHub, type Hub } from "../../src/hub/server.ts";
import { newId } from "../../src/protocol/ids.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";
import { type Answer, enrollNode, nodePost, openSession } from "../helpers/node-http.ts";

const TOKEN = "t0ken";
const ENROLL = "enroll";

describe("http node - bad input", () => {
  let hub: Hub;
  let store: Store;
  let url: string;
  let node: { id: string; auth: string };
  let runId: string;

  beforeAll(async () => {
    store = await openStore("memory:", { maxPayloadBytes: 1000, leaseMs: 200, maxAttempts: 1 });
    hub = createHub({ store, token: TOKEN, enrollToken: ENROLL, sweepIntervalMs: 50 });
    url = await hub.listen();
    node = await enrollNode(url, ENROLL, "n1");
    runId = (await store.createRun()).id;
  });
  afterAll(async () => {
    await hub.close();
  });

  const expectError = (a: Answer, status: number, code: string, field?: string) => {
    expect(a.status, JSON.stringify(a.body)).toBe(status);
    expect(a.body.error?.code).toBe(`FLEETLINK_E_${code}`);
    if (field !== undefined) expect(a.body.error?.field).toBe(field);
  };

  test("http node - a bad credential, an unknown node or no credential is refused at open (401), and on a session's requests", async () => {
    expectError(await nodePost(url, `Bearer ${node.id}.wrong`, "open", {}), 401, "UNAUTHORIZED");
    expectError(await nodePost(url, `Bearer ${newId()}.secret`, "open", {}), 401, "UNAUTHORIZED");
    expectError(await nodePost(url, "Bearer garbage", "open", {}), 401, "UNAUTHORIZED");
    expectError(await nodePost(url, "", "open", {}), 401, "UNAUTHORIZED");
    const s = await openSession(url, node.auth);
    const other = await enrollNode(url, ENROLL, "n-other");
    // A session's handle is worth nothing without its node's credential.
    expectError(await nodePost(url, other.auth, "heartbeat", { session: s.session }), 401, "UNAUTHORIZED");
    expectError(
      await nodePost(url, `Bearer ${node.id}.wrong`, "poll", { session: s.session, waitMs: 0 }),
      401,
      "UNAUTHORIZED",
    );
    expect((await s.call("heartbeat")).status).toBe(200);
  });

  test("http node - requests before hello are refused naming m, as on the stream; a poll before hello too", async () => {
    const opened = await nodePost(url, node.auth, "open", {});
    const session = opened.body.session as string;
    expectError(
      await nodePost(url, node.auth, "poll", { session, waitMs: 0 }),
      400,
      "INVALID_ARGUMENT",
      "session",
    );
    expectError(await nodePost(url, node.auth, "heartbeat", { session }), 400, "INVALID_ARGUMENT", "m");
    expectError(
      await nodePost(url, node.auth, "reply", { session, id: newId(), runId, replyTo: newId() }),
      400,
      "INVALID_ARGUMENT",
      "m",
    );
  });

  test("http node - a node cannot reply to another node's instruction (NOT_ADDRESSEE)", async () => {
    const other = await enrollNode(url, ENROLL, "n2");
    await store.heartbeat(other.id);
    const [ins] = await store.pushInstructions(runId, [{ dst: other.id, method: "m", ttlMs: 60_000 }]);
    const s = await openSession(url, node.auth);
    const a = await s.call("reply", { id: newId(), runId, replyTo: ins!.id, payload: 1 });
    expectError(a, 403, "NOT_ADDRESSEE");
    expect(await store.getReplies(runId, [ins!.id])).toEqual([]);
  });

  test("http node - a reply to an instruction that already ended is refused (INSTRUCTION_ENDED), the session lives on", async () => {
    const n = await enrollNode(url, ENROLL, "n3");
    const s = await openSession(url, n.auth);
    await store.heartbeat(n.id);
    const [ins] = await store.pushInstructions(runId, [{ dst: n.id, method: "m", ttlMs: 60_000 }]);
    hub.nodes.wake(n.id);
    const polled = await s.poll([], 2000);
    expect(polled.body.instructions).toMatchObject([{ id: ins!.id }]);
    // One attempt, a 200 ms lease and no progress: the instruction ends DELIVERY_FAILED.
    await expect
      .poll(async () => (await store.getReplies(runId, [ins!.id]))[0]?.error?.code, { timeout: 3000 })
      .toBe("FLEETLINK_E_DELIVERY_FAILED");
    const late = await s.call("reply", { id: newId(), runId, replyTo: ins!.id, payload: "late" });
    expectError(late, 410, "INSTRUCTION_ENDED");
    expect(late.body.close).toBeUndefined();
    expect((await s.call("heartbeat")).status).toBe(200);
  });

  test("http node - oversized bodies are refused with 413 PAYLOAD_TOO_LARGE", async () => {
    const s = await openSession(url, node.auth);
    // The frame limit is the payload limit (1000 B here) plus 64 KiB of envelope.
    const huge = await s.call("reply", { id: newId(), runId, replyTo: newId(), payload: "x".repeat(70_000) });
    expectError(huge, 413, "PAYLOAD_TOO_LARGE");
    expectError(await nodePost(url, node.auth, "open", { pad: "x".repeat(5000) }), 413, "PAYLOAD_TOO_LARGE");
    expect((await s.call("heartbeat")).status).toBe(200);
  });

  test("http node - malformed JSON and fields of the wrong type get 400 naming the field", async () => {
    const s = await openSession(url, node.auth);
    expectError(await nodePost(url, node.auth, "heartbeat", null, { raw: "{oops" }), 400, "INVALID_ARGUMENT");
    expectError(await nodePost(url, node.auth, "poll", null, { raw: "[1," }), 400, "INVALID_ARGUMENT");
    expectError(await nodePost(url, node.auth, "heartbeat", [s.session]), 400, "INVALID_ARGUMENT", "body");
    expectError(await nodePost(url, node.auth, "heartbeat", {}), 400, "INVALID_ARGUMENT", "session");
    expectError(await s.call("progress", { ids: "x" }), 400, "INVALID_ARGUMENT", "ids");
    expectError(await s.call("progress", { ids: ["not-a-uuid"] }), 400, "INVALID_ARGUMENT", "ids.0");
    expectError(await s.call("heartbeat", { heartbeatIntervalMs: "fast" }), 400, "INVALID_ARGUMENT");
    expectError(await s.call("reply", { id: "x", runId, replyTo: newId() }), 400, "INVALID_ARGUMENT", "id");
    expectError(await s.call("poll", { waitMs: 60_000 }), 400, "INVALID_ARGUMENT", "body.waitMs");
    expectError(await s.call("poll", { acks: ["nope"] }), 400, "INVALID_ARGUMENT");
    // Malformed requests do not end the session (the stream cuts a peer off after 5 malformed frames; an HTTP
    // request that does not parse never reaches the session).
    expect((await s.call("heartbeat")).status).toBe(200);
  });

  test("http node - a hello naming an unsupported protocol gets 400 UNSUPPORTED_PROTOCOL naming both; the session ends (410, close 4002)", async () => {
    const opened = await nodePost(url, node.auth, "open", {});
    const session = opened.body.session as string;
    const hello = await nodePost(url, node.auth, "hello", { session, inflight: [], protocol: 2 });
    expectError(hello, 400, "UNSUPPORTED_PROTOCOL", "protocol");
    expect(hello.body.error?.message).toMatch(/node speaks protocol 2; this hub speaks 1/);
    await expect
      .poll(async () => (await nodePost(url, node.auth, "poll", { session, waitMs: 0 })).body.close?.code)
      .toBe(4002);
  });

  test("http node - an unknown session is 410 SESSION_ENDED with close 1001; a closed one says how it ended", async () => {
    const unknown = await nodePost(url, node.auth, "heartbeat", { session: "no-such-session" });
    expectError(unknown, 410, "SESSION_ENDED");
    expect(unknown.body.close?.code).toBe(1001);
    const s = await openSession(url, node.auth);
    expect((await s.call("close")).body).toEqual({ closed: true });
    const after = await s.call("heartbeat");
    expectError(after, 410, "SESSION_ENDED");
    expect(after.body.close?.code).toBe(1000);
  });
});
