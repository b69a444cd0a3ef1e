// With an OpenTelemetry SDK registered (in-memory exporter), a call made inside an application span is one
// trace from the coordinator through the hub to the handler and back: fleetlink.push (SDK, hub),
// fleetlink.claim and fleetlink.deliver (hub), fleetlink.handle (agent, the handler's own spans under it) and
// fleetlink.reply (agent, hub), every one with the application's trace id and the right parent. Real hub,
// store, sockets and agents, in one process so one exporter sees every span. SQLite and PostgreSQL.
import { context, type Span, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { startFleet, type TestFleet } from "../helpers/fleet.ts";
import { dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";

const exporter = new InMemorySpanExporter();
const contextManager = new AsyncLocalStorageContextManager();
beforeAll(() => {
  contextManager.enable();
  context.setGlobalContextManager(contextManager);
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
});
const schemas: string[] = [];
afterAll(async () => {
  trace.disable();
  context.disable();
  for (const s of schemas) await dropSchema(s);
});

const tp = (s: { spanContext(): { traceId: string; spanId: string } }) =>
  `00-${s.spanContext().traceId}-${s.spanContext().spanId}-01`;
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

/** Waits until the exporter holds spans matching every name count, or 10 s. */
const spansUntil = async (want: Record<string, number>): Promise<ReadableSpan[]> => {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const spans = exporter.getFinishedSpans();
    const ok = Object.entries(want).every(([n, k]) => spans.filter((s) => s.name === n).length >= k);
    if (ok || Date.now() > deadline) return spans;
    await new Promise((r) => setTimeout(r, 20));
  }
};

const backends = [
  ["sqlite", () => ({})],
  [
    "postgres",
    () => {
      const { url, schema } = pgSchemaUrl("otel");
      schemas.push(schema);
      return { storeUrl: url };
    },
  ],
] as const;

describe.each(backends)("OpenTelemetry spans (%s)", (backend, opts) => {
  if (backend === "postgres" && !PG_URL) throw new Error("FLEETLINK_TEST_POSTGRES_URL is required");
  let f: TestFleet;
  beforeEach(async () => {
    exporter.reset();
    f = await startFleet(opts());
  });
  afterEach(async () => {
    await f.close();
  });

  test("spans - one trace from the coordinator's span through push, claim, deliver, handle and reply", async () => {
    const tracer = trace.getTracer("app");
    const seen: (string | undefined)[] = [];
    const who = async (_p: unknown, ctx: { traceparent?: string }) => {
      seen.push(ctx.traceparent);
      // The handler's own span joins the trace, under fleetlink.handle.
      const own = tracer.startSpan("app.work");
      own.end();
      return "ok";
    };
    const nodes = [await f.node("ws", { who }), await f.node("http", { who }, { transport: "http" })];
    const ids = nodes.map((n) => n.nodeId!);
    const run = await (await f.fleet()).createRun();
    let root!: Span;
    const res = await tracer.startActiveSpan("app.request", async (span) => {
      root = span;
      try {
        return await run.call(ids, "who", null, { quorum: "all", timeoutMs: 10_000 });
      } finally {
        span.end();
      }
    });
    const spans = await spansUntil({
      "fleetlink.push": 2,
      "fleetlink.claim": 2,
      "fleetlink.deliver": 2,
      "fleetlink.handle": 2,
      "fleetlink.reply": 4,
      "app.work": 2,
    });
    const named = (n: string) => spans.filter((s) => s.name === n);
    const traceId = root.spanContext().traceId;
    for (const s of spans) expect(s.spanContext().traceId, s.name).toBe(traceId);

    // The SDK's push is a child of the application's span; the instructions carry the push's context.
    const sdkPush = named("fleetlink.push").find((s) => parentOf(s) === root.spanContext().spanId)!;
    expect(sdkPush, "the SDK's fleetlink.push").toBeDefined();
    const pushId = sdkPush.spanContext().spanId;
    const hubPush = named("fleetlink.push").find((s) => s !== sdkPush)!;
    expect(parentOf(hubPush)).toBe(pushId);
    expect(named("fleetlink.claim").map(parentOf)).toEqual([pushId, pushId]);
    expect(named("fleetlink.deliver").map(parentOf)).toEqual([pushId, pushId]);
    expect(seen).toEqual([tp(sdkPush), tp(sdkPush)]);

    // Each handler ran inside its fleetlink.handle; each reply (agent's and hub's) hangs under that handle,
    // and the call's result names the handle span of each node.
    const handles = named("fleetlink.handle");
    expect(handles.map(parentOf)).toEqual([pushId, pushId]);
    const handleIds = handles.map((h) => h.spanContext().spanId).sort();
    expect(named("app.work").map(parentOf).sort()).toEqual(handleIds);
    expect(named("fleetlink.reply").map(parentOf).sort()).toEqual([...handleIds, ...handleIds].sort());
    expect([...res.traceparents.values()].sort()).toEqual(handles.map(tp).sort());
    for (const id of ids) {
      const h = handles.find(
        (s) => s.attributes["fleetlink.instruction"] && tp(s) === res.traceparents.get(id),
      );
      expect(h, `node ${id}'s handle span`).toBeDefined();
    }
  });

  test("spans - an explicit traceparent wins over the active span; no parent at all starts no trace", async () => {
    const tracer = trace.getTracer("app");
    const node = await f.node("n", { who: (_p, ctx) => ctx.traceparent ?? null });
    const run = await (await f.fleet()).createRun();
    const given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    await tracer.startActiveSpan("app.request", async (span) => {
      await run.call([node.nodeId!], "who", null, { timeoutMs: 10_000, traceparent: given });
      span.end();
    });
    const spans = await spansUntil({ "fleetlink.handle": 1, "fleetlink.reply": 2 });
    // The SDK's push hangs under the given context, not under app.request; so does everything after it.
    const sdkPush = spans.find((s) => s.name === "fleetlink.push" && parentOf(s) === "00f067aa0ba902b7");
    expect(sdkPush, "the SDK's fleetlink.push under the given parent").toBeDefined();
    for (const s of spans.filter((s) => s.name.startsWith("fleetlink.")))
      expect(s.spanContext().traceId, s.name).toBe("4bf92f3577b34da6a3ce929d0e0e4736");

    // Outside any span and without a traceparent: fleetlink creates no span and sends no context.
    exporter.reset();
    const res = await run.call([node.nodeId!], "who", null, { timeoutMs: 10_000 });
    expect(res.replies.get(node.nodeId!)).toBe(null);
    expect(res.traceparents.size).toBe(0);
    await new Promise((r) => setTimeout(r, 100));
    expect(exporter.getFinishedSpans().filter((s) => s.name.startsWith("fleetlink."))).toEqual([]);
  });

  test("spans - a failing handler's span is marked failed and the error reply still carries its context", async () => {
    const tracer = trace.getTracer("app");
    const node = await f.node("n", {
      boom: () => {
        throw new Error("boom");
      },
    });
    const run = await (await f.fleet()).createRun();
    const err = await tracer.startActiveSpan("app.request", async (span) => {
      try {
        return await run.stream([node.nodeId!], "boom", null, { timeoutMs: 10_000 }).next();
      } finally {
        span.end();
      }
    });
    const spans = await spansUntil({ "fleetlink.handle": 1 });
    const handle = spans.find((s) => s.name === "fleetlink.handle")!;
    expect(handle.status.code).toBe(2); // SpanStatusCode.ERROR
    expect(handle.status.message).toBe("boom");
    expect(err.value?.ok).toBe(false);
    expect(err.value?.traceparent).toBe(tp(handle));
  });
});
