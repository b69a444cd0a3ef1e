import { describe, expect, test } from "vitest";
import { MaelstromNode } from "../../src/maelstrom/node.ts";
import { MaelstromErrors, RPCError } from "../../src/maelstrom/protocol.ts";
import { broadcast, echo } from "../../src/maelstrom/workloads/index.ts";
import { memoryPair } from "../../src/stream/transport.ts";

/** A node on one end of an in-memory line transport; the test plays the network on the other end. */
const harness = (setup: (n: MaelstromNode) => void) => {
  const [a, b] = memoryPair();
  const logs: string[] = [];
  const node = new MaelstromNode({ log: (l) => logs.push(l), rpcTimeoutMs: 100 });
  setup(node);
  void node.run(a);
  const inbox: Record<string, unknown>[] = [];
  b.onMessage((f) => inbox.push(JSON.parse(f)));
  const send = (m: object) => b.send(JSON.stringify(m));
  const next = async () => {
    for (let i = 0; i < 200 && inbox.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    return inbox.shift() as { src: string; dest: string; body: Record<string, unknown> };
  };
  return { node, send, next, raw: (s: string) => b.send(s), logs, inbox };
};

const init = {
  src: "c0",
  dest: "n1",
  body: { type: "init", msg_id: 1, node_id: "n1", node_ids: ["n1", "n2"] },
};

describe("maelstrom runtime", () => {
  test("runtime - init, echo, unknown top-level fields ignored, unsupported types get error 10", async () => {
    const h = harness(echo);
    h.send(init);
    expect(await h.next()).toEqual({ src: "n1", dest: "c0", body: { type: "init_ok", in_reply_to: 1 } });
    expect(h.node.peers).toEqual(["n2"]);
    h.send({ src: "c1", dest: "n1", id: 77, extra: true, body: { type: "echo", msg_id: 2, echo: "hi" } });
    expect(await h.next()).toEqual({
      src: "n1",
      dest: "c1",
      body: { type: "echo_ok", echo: "hi", in_reply_to: 2 },
    });
    h.send({ src: "c1", dest: "n1", body: { type: "frobnicate", msg_id: 3 } });
    expect((await h.next()).body).toMatchObject({ type: "error", code: 10, in_reply_to: 3 });
  });

  test("runtime - malformed lines are logged to stderr, never answered on stdout", async () => {
    const h = harness(echo);
    h.send(init);
    await h.next();
    h.raw("not json");
    h.raw(JSON.stringify({ src: "c1", body: { type: "echo" } }));
    await new Promise((r) => setTimeout(r, 30));
    expect(h.inbox).toEqual([]);
    expect(h.logs.join("\n")).toMatch(/malformed message \(not JSON\)[\s\S]*missing src or dest/);
  });

  test("runtime - rpc resolves with the reply, rejects with typed errors and timeouts; late replies are dropped", async () => {
    const h = harness(() => {});
    h.send(init);
    await h.next();
    const ok = h.node.rpc("n2", { type: "ping" });
    const req = await h.next();
    h.send({ src: "n2", dest: "n1", body: { type: "pong", in_reply_to: req.body.msg_id } });
    expect(await ok).toMatchObject({ type: "pong" });
    const bad = h.node.rpc("n2", { type: "ping" });
    const req2 = await h.next();
    h.send({
      src: "n2",
      dest: "n1",
      body: { type: "error", code: 11, text: "busy", in_reply_to: req2.body.msg_id },
    });
    const err = await bad.catch((e) => e);
    expect(err).toBeInstanceOf(RPCError);
    expect(err).toMatchObject({
      code: 11,
      message: "busy",
      definite: true,
      codeName: "temporarily-unavailable",
    });
    const slow = h.node.rpc("n2", { type: "ping" });
    const req3 = await h.next();
    const t = await slow.catch((e) => e);
    expect(t).toMatchObject({ code: 0, definite: false });
    h.send({ src: "n2", dest: "n1", body: { type: "pong", in_reply_to: req3.body.msg_id } });
    await new Promise((r) => setTimeout(r, 20));
    expect(h.inbox).toEqual([]);
  });

  test("runtime - a handler that throws answers with an error body (crash 13, or its RPCError code)", async () => {
    const h = harness((n) => {
      n.on("boom", () => {
        throw new Error("kaput");
      });
      n.on("cas", () => {
        throw RPCError.of("precondition-failed", "expected 3");
      });
    });
    h.send(init);
    await h.next();
    h.send({ src: "c1", dest: "n1", body: { type: "boom", msg_id: 5 } });
    expect((await h.next()).body).toMatchObject({ type: "error", code: 13, text: "kaput" });
    h.send({ src: "c1", dest: "n1", body: { type: "cas", msg_id: 6 } });
    expect((await h.next()).body).toMatchObject({ type: "error", code: 22, text: "expected 3" });
    expect(MaelstromErrors.crash.definite).toBe(false);
    expect(MaelstromErrors["txn-conflict"]).toEqual({ code: 30, definite: true });
  });

  test("broadcast - every broadcast is acknowledged, duplicates included, and read returns each value once", async () => {
    const h = harness(broadcast);
    h.send({ ...init, body: { ...init.body, node_ids: ["n1"] } });
    await h.next();
    for (const [i, v] of [1, 2, 1, 1].entries()) {
      h.send({ src: "c1", dest: "n1", body: { type: "broadcast", msg_id: 10 + i, message: v } });
      expect((await h.next()).body).toEqual({ type: "broadcast_ok", in_reply_to: 10 + i });
    }
    h.send({ src: "c1", dest: "n1", body: { type: "read", msg_id: 20 } });
    expect(((await h.next()).body.messages as number[]).sort()).toEqual([1, 2]);
  });
});
