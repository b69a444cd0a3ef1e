// A raw W3C traceparent travels with a call through the real hub, store and agents, without an OpenTelemetry
// SDK (the API may be installed, but no tracer provider is registered): coordinator → instruction → handler
// ctx → reply → the call's result. Bad ones are refused naming the field, and change nothing. SQLite and
// PostgreSQL.
import { afterAll, afterEach, beforeEach, describe, expect, test } from "vitest";
import { isFleetlinkError } from "../../src/protocol/errors.ts";
import { newId } from "../../src/protocol/ids.ts";
import { encodePayload } from "../../src/protocol/wire.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";
import { dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";

const TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const BAD: [string, unknown][] = [
  ["uppercase hex", TP.toUpperCase()],
  ["an all-zero trace id", `00-${"0".repeat(32)}-00f067aa0ba902b7-01`],
  ["an all-zero parent id", `00-4bf92f3577b34da6a3ce929d0e0e4736-${"0".repeat(16)}-01`],
  ["an unknown version", `ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`],
  ["a short trace id", "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01"],
  ["trailing text", `${TP}-extra`],
  ["an empty string", ""],
  ["a number", 42],
];

const schemas: string[] = [];
afterAll(async () => {
  for (const s of schemas) await dropSchema(s);
});

const backends = [
  ["sqlite", () => ({})],
  [
    "postgres",
    () => {
      const { url, schema } = pgSchemaUrl("trace");
      schemas.push(schema);
      return { storeUrl: url };
    },
  ],
] as const;

describe.each(backends)("traceparent without an OpenTelemetry SDK (%s)", (backend, opts) => {
  if (backend === "postgres" && !PG_URL) throw new Error("FLEETLINK_TEST_POSTGRES_URL is required");
  let f: TestFleet;
  beforeEach(async () => {
    f = await startFleet(opts());
  });
  afterEach(async () => {
    await f.close();
  });

  /** Two nodes, one on the WebSocket stream and one on the HTTP node API; each answers with its ctx.traceparent. */
  const twoNodes = async () => {
    const seen: (string | undefined)[] = [];
    const who = (_p: unknown, ctx: { traceparent?: string }) => {
      seen.push(ctx.traceparent);
      return { traceparent: ctx.traceparent ?? null };
    };
    const ws = await f.node("ws", { who });
    const http = await f.node("http", { who }, { transport: "http" });
    return { ids: [ws.nodeId!, http.nodeId!], seen };
  };

  test("call - a traceparent given to call() reaches every handler's ctx and comes back on the result", async () => {
    const { ids, seen } = await twoNodes();
    const run = await (await f.fleet()).createRun();
    const res = await run.call(ids, "who", null, { quorum: "all", timeoutMs: 10_000, traceparent: TP });
    expect(seen).toEqual([TP, TP]);
    for (const id of ids) {
      expect(res.replies.get(id)).toEqual({ traceparent: TP });
      expect(res.traceparents.get(id)).toBe(TP);
    }
    // Stored with the instruction and with the reply.
    const ins = await f.store.listInstructions(run.id);
    expect(ins.map((i) => i.traceparent)).toEqual([TP, TP]);
    const replies = await f.store.getReplies(
      run.id,
      ins.map((i) => i.id),
    );
    expect(replies.map((r) => r.traceparent)).toEqual([TP, TP]);
    // A stream's items carry it too.
    const items = [];
    for await (const it of run.stream(ids, "who", null, { timeoutMs: 10_000, traceparent: TP }))
      items.push(it);
    expect(items.map((i) => i.traceparent)).toEqual([TP, TP]);
  });

  test("call - an untraced call carries no traceparent anywhere", async () => {
    const { ids, seen } = await twoNodes();
    const run = await (await f.fleet()).createRun();
    const res = await run.call(ids, "who", null, { quorum: "all", timeoutMs: 10_000 });
    expect(seen).toEqual([undefined, undefined]);
    expect(res.traceparents.size).toBe(0);
    for (const id of ids) expect(res.replies.get(id)).toEqual({ traceparent: null });
    const ins = await f.store.listInstructions(run.id);
    expect(ins.map((i) => i.traceparent)).toEqual([null, null]);
  });

  test("call - a malformed traceparent is INVALID_ARGUMENT naming traceparent, and nothing is pushed", async () => {
    const { ids, seen } = await twoNodes();
    const run = await (await f.fleet()).createRun();
    for (const [why, bad] of BAD) {
      const err = await run
        .call(ids, "who", null, { timeoutMs: 5000, traceparent: bad as string })
        .catch((e: unknown) => e);
      expect(isFleetlinkError(err, "INVALID_ARGUMENT"), `${why}: ${String(err)}`).toBe(true);
      expect((err as { field?: string }).field, why).toBe("traceparent");
      const viaPush = await run
        .push(ids, "who", null, { ttlMs: 5000, traceparent: bad as string })
        .catch((e: unknown) => e);
      expect((viaPush as { field?: string }).field, why).toBe("traceparent");
    }
    expect(await f.store.listInstructions(run.id)).toEqual([]);
    expect(seen).toEqual([]);
    expect(run.pendingCalls).toBe(0);
  });

  test("HTTP push - traceparent is checked by the route's schema and stored", async () => {
    const node = await f.node("n", { who: (_p, ctx) => ctx.traceparent ?? null });
    const run = await (await f.fleet()).createRun();
    const push = (traceparent: unknown) =>
      f.hub.app.inject({
        method: "POST",
        url: `/v1/runs/${run.id}/instructions`,
        headers: { authorization: `Bearer ${TOKEN}` },
        payload: { items: [{ dst: node.nodeId, method: "who", ttlMs: 5000, traceparent }] },
      });
    for (const [why, bad] of BAD) {
      const res = await push(bad);
      expect(res.statusCode, why).toBe(400);
      expect(res.json().error.code, why).toBe("FLEETLINK_E_INVALID_ARGUMENT");
      expect(res.json().error.field, why).toMatch(/traceparent$/);
    }
    expect(await f.store.listInstructions(run.id)).toEqual([]);
    const ok = await push(TP);
    expect(ok.statusCode).toBe(201);
    const [ins] = await f.store.listInstructions(run.id);
    expect(ins?.traceparent).toBe(TP);
    // The node's reply is stored with the trace context.
    const deadline = Date.now() + 10_000;
    while ((await f.store.getReplies(run.id, [ins!.id])).length === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    const stored = await f.store.getReplies(run.id, [ins!.id]);
    expect(stored[0]?.traceparent).toBe(TP);
    expect(stored[0] && JSON.parse(Buffer.from(stored[0].payload).toString())).toBe(TP);
  });

  test("store - a malformed traceparent in a push or a reply is refused naming items[i].traceparent", async () => {
    const node = await f.node("n", {});
    const run = await f.store.createRun();
    const item = { dst: node.nodeId!, method: "m", ttlMs: 5000, payload: encodePayload(1) };
    const err = await f.store
      .pushInstructions(run.id, [item, { ...item, traceparent: "nope" } as typeof item])
      .catch((e: unknown) => e);
    expect(isFleetlinkError(err, "INVALID_ARGUMENT")).toBe(true);
    expect((err as { field?: string }).field).toBe("items[1].traceparent");
    const [batch] = await f.store.pushBatch([
      { runId: run.id, items: [{ ...item, traceparent: TP.toUpperCase() } as typeof item] },
    ]);
    expect(batch?.ok).toBe(false);
    expect(await f.store.listInstructions(run.id)).toEqual([]);
    const [pushed] = await f.store.pushInstructions(run.id, [{ ...item, traceparent: TP } as typeof item]);
    const [stored] = await f.store.storeReplies([
      {
        id: newId(),
        runId: run.id,
        nodeId: node.nodeId!,
        replyTo: pushed!.id,
        traceparent: "00-x",
      } as Parameters<typeof f.store.storeReplies>[0][number],
    ]);
    expect(stored?.ok).toBe(false);
    expect(!stored?.ok && stored?.error.field).toBe("items[0].traceparent");
    expect(await f.store.getReplies(run.id, [pushed!.id])).toEqual([]);
  });
});
