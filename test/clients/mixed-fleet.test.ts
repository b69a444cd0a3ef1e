import { afterEach, describe, expect, test } from "vitest";
import { IncompleteCallError } from "../../src/coordinator/errors.ts";
import type { Handler } from "../../src/node/agent.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet } from "../helpers/fleet.ts";
import { describePg, dropSchema, pgSchemaUrl } from "../helpers/postgres.ts";
import { type PyNode, startPyNode } from "./py-node.ts";

/** The conformance handlers, as the TypeScript nodes of the fleet serve them. */
const handlers: Record<string, Handler> = {
  echo: (p) => p,
  sleep: async (p) => {
    const ms = (p as { ms: number }).ms;
    await new Promise((r) => setTimeout(r, ms));
    return { slept: ms };
  },
};

/**
 * A TypeScript coordinator over a mixed fleet: two TypeScript nodes on the WebSocket stream, one on the HTTP
 * node API, two Python nodes (HTTP). Quorum calls and a broadcast reach every kind; a Python node killed with
 * SIGKILL in the middle of a call gives a typed outcome, never a hang.
 */
const mixedFleet = (backend: string, store: () => { url?: string; cleanup: () => Promise<void> }) => {
  let fleet: TestFleet | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  const py: PyNode[] = [];
  afterEach(async () => {
    await Promise.all(py.splice(0).map((n) => n.kill("SIGKILL")));
    await fleet?.close();
    await cleanup?.();
    fleet = undefined;
  });

  test(`mixed fleet (${backend}) - quorum calls and a broadcast over TypeScript (stream, HTTP) and Python nodes; a Python node killed mid-call ends NODE_UNAVAILABLE or leaves the quorum met`, async () => {
    const s = store();
    cleanup = s.cleanup;
    fleet = await startFleet({ ...(s.url ? { storeUrl: s.url } : {}), pingIntervalMs: 2000 });
    const f = fleet;
    const [ws1, ws2, http] = await Promise.all([
      f.node("ts-ws-1", handlers),
      f.node("ts-ws-2", handlers),
      f.node("ts-http", handlers, { transport: "http" }),
    ]);
    py.push(
      ...(await Promise.all(
        ["py-1", "py-2"].map((name) => startPyNode({ hubs: [f.url], enrollToken: ENROLL_TOKEN, name })),
      )),
    );
    const [py1, py2] = py as [PyNode, PyNode];
    const ids = [ws1.nodeId!, ws2.nodeId!, http.nodeId!, py1.nodeId, py2.nodeId];
    const run = await (await f.fleet()).createRun();
    const all = run.configuration(ids);

    const majority = await all.call("echo", { n: 1 }, { quorum: "majority", timeoutMs: 15_000 });
    expect(majority.replies.size).toBeGreaterThanOrEqual(3);
    for (const v of majority.replies.values()) expect(v).toEqual({ n: 1 });

    const every = await all.call("echo", { n: 2 }, { quorum: "all", timeoutMs: 15_000 });
    expect([...every.replies.keys()].sort()).toEqual([...ids].sort());
    for (const v of every.replies.values()) expect(v).toEqual({ n: 2 });

    const bc = await all.broadcast("echo", "to everyone", { ttlMs: 15_000 });
    const outcomes = await bc.done;
    expect([...outcomes.keys()].sort()).toEqual([...ids].sort());
    for (const o of outcomes.values()) expect(o).toMatchObject({ ok: true, value: "to everyone" });

    // Each Python node ran each instruction once.
    for (const p of py) {
      const lines = p.calls();
      expect(new Set(lines).size).toBe(lines.length);
      expect(lines.filter((l) => l.endsWith(" echo")).length).toBeGreaterThanOrEqual(2);
    }

    // py-1 dies (SIGKILL: no leave, no close) while its handler runs.
    const started = Date.now();
    const allCall = all.call("sleep", { ms: 1500 }, { quorum: "all", timeoutMs: 20_000 }).catch((e) => e);
    const majorityCall = all.call("sleep", { ms: 1500 }, { quorum: "majority", timeoutMs: 20_000 });
    await expect
      .poll(() => py1.calls().filter((l) => l.endsWith(" sleep")).length, { timeout: 10_000 })
      .toBe(2);
    await py1.kill("SIGKILL");

    const m = await majorityCall;
    expect(m.replies.size).toBeGreaterThanOrEqual(3);
    expect(m.replies.has(py1.nodeId)).toBe(false);
    for (const v of m.replies.values()) expect(v).toEqual({ slept: 1500 });

    const e = await allCall;
    expect(e).toBeInstanceOf(IncompleteCallError);
    const failed = e as IncompleteCallError;
    expect(failed.errors.get(py1.nodeId)?.code).toBe("FLEETLINK_E_NODE_UNAVAILABLE");
    // "all" fails as soon as one node has failed: the replies so far are the others', never a wrong one.
    expect(failed.replies.has(py1.nodeId)).toBe(false);
    for (const v of failed.replies.values()) expect(v).toEqual({ slept: 1500 });
    // Typed well before the call's own deadline: the node's heartbeat window (2 s) and a sweep, not 20 s.
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 90_000);
};

describe("mixed fleet on SQLite", () => {
  mixedFleet("sqlite", () => ({ cleanup: async () => {} }));
});

describePg("mixed fleet on PostgreSQL", () => {
  mixedFleet("postgres", () => {
    const { url, schema } = pgSchemaUrl("mixed");
    return { url, cleanup: () => dropSchema(schema) };
  });
});
