import { afterEach, beforeEach, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { IncompleteCallError } from "../../src/coordinator/errors.ts";
import { NodeAgent } from "../../src/node/agent.ts";
import type { AgentStatus } from "../../src/node/status.ts";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet } from "../helpers/fleet.ts";

describe("quorum calls through one hub", () => {
  let f: TestFleet;
  beforeEach(async () => {
    f = await startFleet();
  });
  afterEach(async () => {
    await f.close();
  });

  test("call - majority and all resolve with every node's reply", async () => {
    const agents = await Promise.all(
      ["a", "b", "c"].map((n) => f.node(n, { echo: (p, ctx) => ({ p, node: ctx.nodeId }) })),
    );
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const cfg = run.configuration(agents.map((a) => a.nodeId!));
    const all = await cfg.call("echo", { x: 1 }, { quorum: "all", timeoutMs: 5000 });
    expect(all.replies.size).toBe(3);
    for (const a of agents) expect(all.replies.get(a.nodeId!)).toEqual({ p: { x: 1 }, node: a.nodeId });
    const maj = await cfg.call("echo", 2, { quorum: "majority", timeoutMs: 5000 });
    expect(maj.replies.size).toBeGreaterThanOrEqual(2);
  });

  test("call - a failing handler is reported per node; an impossible quorum rejects with IncompleteCallError", async () => {
    const ok = await f.node("ok", { work: () => "fine" });
    const bad = await f.node("bad", {
      work: () => {
        throw new Error("boom");
      },
    });
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const cfg = run.configuration([ok.nodeId!, bad.nodeId!]);
    const first = await cfg.call("work", null, { quorum: "first", timeoutMs: 5000 });
    expect(first.replies.get(ok.nodeId!)).toBe("fine");
    const err = await cfg.call("work", null, { quorum: "all", timeoutMs: 5000 }).catch((e) => e);
    expect(err).toBeInstanceOf(IncompleteCallError);
    expect(err.failedNodes).toEqual([bad.nodeId]);
    expect(err.errors.get(bad.nodeId).message).toBe("boom");
    expect(err.replies.get(ok.nodeId)).toBe("fine");
  });

  test("call - threshold and custom quorum functions; stream yields replies as they arrive", async () => {
    const agents = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        f.node(`s${i}`, {
          nap: async () => {
            await new Promise((r) => setTimeout(r, i * 40));
            return i;
          },
        }),
      ),
    );
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const cfg = run.configuration(agents.map((a) => a.nodeId!));
    const two = await cfg.call("nap", null, { quorum: { threshold: 2 }, timeoutMs: 5000 });
    expect([...two.replies.values()].sort()).toEqual([0, 1]);
    const custom = await cfg.call("nap", null, {
      quorum: ({ replies }) => ([...replies.values()].includes(2) ? "done" : "wait"),
      timeoutMs: 5000,
    });
    expect([...custom.replies.values()]).toContain(2);
    const order: unknown[] = [];
    for await (const item of cfg.stream("nap", null, { timeoutMs: 5000 })) order.push(item.ok && item.value);
    expect(order).toEqual([0, 1, 2, 3]);
    await expect(cfg.call("nap", null, { quorum: { threshold: 9 } })).rejects.toThrow(/quorum/);
  });

  test("configuration - immutable sorted sets with add, remove, union, difference", async () => {
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const a = run.configuration(["c", "a", "b", "a"]);
    expect(a.ids).toEqual(["a", "b", "c"]);
    const b = a.add("d").remove("a");
    expect(b.ids).toEqual(["b", "c", "d"]);
    expect(a.ids).toEqual(["a", "b", "c"]);
    expect(a.union(b).ids).toEqual(["a", "b", "c", "d"]);
    expect(a.difference(b).ids).toEqual(["a"]);
    expect(Object.isFrozen(a.ids)).toBe(true);
    expect(typeof b.call).toBe("function");
  });

  test("streams - a newer stream of the same node replaces the old one; the old one's close never detaches it", async () => {
    const agent = await f.node("twin", { who: () => "agent" });
    const statuses: AgentStatus["state"][] = [];
    void (async () => {
      for await (const s of agent.status()) statuses.push(s.state);
    })();
    const identity = JSON.parse(JSON.stringify({ nodeId: agent.nodeId }));
    await agent.stop();
    // A raw stream for the node (a stale connection), then the agent reconnects with the same identity.
    const enrolled = await fetch(`${f.url}/v1/nodes/enroll`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${ENROLL_TOKEN}` },
      body: JSON.stringify({ name: "twin2" }),
    }).then((r) => r.json() as Promise<{ node: { id: string }; credential: string }>);
    const token = `${enrolled.node.id}.${enrolled.credential}`;
    const old = new WebSocket(`${f.url.replace("http", "ws")}/v1/nodes/stream`, {
      headers: { authorization: `Bearer ${token}` },
    });
    await new Promise((r) => old.on("open", r));
    old.send(JSON.stringify({ t: "req", id: "h", m: "hello", b: { inflight: [] } }));
    await new Promise((r) => old.once("message", r));
    const oldClosed = new Promise<number>((r) => old.on("close", (c) => r(c)));
    const twin = new NodeAgent({
      hubs: [f.url],
      name: "twin2",
      identity: { nodeId: enrolled.node.id, credential: enrolled.credential },
      handlers: { who: () => "new stream" },
    });
    await twin.start();
    expect(await oldClosed).toBe(CloseCode.replaced);
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const res = await run
      .configuration([enrolled.node.id])
      .call("who", null, { quorum: "all", timeoutMs: 5000 });
    expect(res.replies.get(enrolled.node.id)).toBe("new stream");
    await twin.stop();
    expect(statuses).toEqual(["online", "stopping", "stopped"]);
    expect(identity.nodeId).toBe(agent.nodeId);
  });

  test("broadcast - reaches a node that is offline now when it comes back within the TTL, exactly once", async () => {
    const seen: unknown[] = [];
    const online = await f.node("on", { cfg: (p) => p });
    const later = await f.node("later", {
      cfg: (p) => {
        seen.push(p);
        return p;
      },
    });
    const laterId = later.nodeId!;
    await later.stop();
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const b = await run
      .configuration([online.nodeId!, laterId])
      .broadcast("cfg", { v: 7 }, { ttlMs: 30_000 });
    await new Promise((r) => setTimeout(r, 300));
    const st = await b.status();
    expect(st.get(online.nodeId!)).toBe("replied");
    expect(st.get(laterId)).toBe("pending");
    const back = new NodeAgent({
      hubs: [f.url],
      name: "later",
      identity: (later as unknown as { identity: { nodeId: string; credential: string } }).identity,
      handlers: {
        cfg: (p) => {
          seen.push(p);
          return p;
        },
      },
    });
    await back.start();
    const done = await b.done;
    expect(done.get(laterId)).toMatchObject({ ok: true, value: { v: 7 } });
    expect(seen).toEqual([{ v: 7 }]);
    expect((await b.status()).get(laterId)).toBe("replied");
    await back.stop();
  });

  test("agent - a graceful stop finishes the handler in flight and delivers its reply first", async () => {
    const agent = await f.node("graceful", {
      slow: async (p) => {
        await new Promise((r) => setTimeout(r, 300));
        return p;
      },
    });
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const call = run
      .configuration([agent.nodeId!])
      .call("slow", "finished", { quorum: "all", timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 100));
    await agent.stop();
    expect((await call).replies.get(agent.nodeId!)).toBe("finished");
    expect(agent.state.state).toBe("stopped");
  });
});
