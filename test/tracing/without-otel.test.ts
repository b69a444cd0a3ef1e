// `@opentelemetry/api` is an optional peer dependency: with it missing (its import fails, as when it is not
// installed), a traced call still carries its traceparent to the handler and back, and a bad one is still
// refused naming the field. A fresh process whose module hook refuses the package to fleetlink's tracing.
import { describe, expect, test } from "vitest";
import { runHookedScript } from "../helpers/hooked.ts";

const src = (p: string) => JSON.stringify(new URL(`../../src/${p}`, import.meta.url).href);
const TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

describe("without @opentelemetry/api", () => {
  test("traceparent - flows end to end when the API cannot be imported", () => {
    const hook = `import { registerHooks } from "node:module";
      globalThis.refused = [];
      registerHooks({
        resolve(spec, ctx, next) {
          if (spec === "@opentelemetry/api" && ctx.parentURL?.includes("/src/util/tracing.ts")) {
            globalThis.refused.push(spec);
            const e = new Error("Cannot find package '@opentelemetry/api'");
            e.code = "ERR_MODULE_NOT_FOUND";
            throw e;
          }
          return next(spec, ctx);
        },
      });`;
    const script = `
      const { createHub } = await import(${src("hub/server.ts")});
      const { openStore } = await import(${src("store/open.ts")});
      const { NodeAgent } = await import(${src("node/agent.ts")});
      const { Fleet } = await import(${src("coordinator/fleet.ts")});
      const { loadOtel } = await import(${src("util/tracing.ts")});
      const store = await openStore("memory:");
      const hub = createHub({ store, token: "t", enrollToken: "e", dashboard: false });
      const url = await hub.listen();
      const agent = new NodeAgent({ hubs: [url], name: "n", enrollToken: "e", heartbeatIntervalMs: 1000,
        handlers: { who: (_p, ctx) => ctx.traceparent ?? null } });
      await agent.start();
      const fleet = await Fleet.connect({ hub: [url], token: "t" });
      const run = await fleet.createRun();
      const res = await run.call([agent.nodeId], "who", null, { timeoutMs: 10000, traceparent: ${JSON.stringify(TP)} });
      const plain = await run.call([agent.nodeId], "who", null, { timeoutMs: 10000 });
      const bad = await run.call([agent.nodeId], "who", null, { traceparent: "00-nope" })
        .then(() => null, (e) => ({ code: e.code, field: e.field }));
      const out = {
        otel: await loadOtel(),
        refused: globalThis.refused.length > 0,
        value: res.replies.get(agent.nodeId),
        traceparent: res.traceparents.get(agent.nodeId),
        plain: { value: plain.replies.get(agent.nodeId), traces: plain.traceparents.size },
        bad,
      };
      await fleet.close();
      await agent.stop({ timeoutMs: 1000 });
      await hub.close();
      await store.close();
      process.stdout.write(JSON.stringify(out));
      process.exit(0);`;
    const r = runHookedScript(hook, script, 60_000);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      otel: null,
      refused: true,
      value: TP,
      traceparent: TP,
      plain: { value: null, traces: 0 },
      bad: { code: "FLEETLINK_E_INVALID_ARGUMENT", field: "traceparent" },
    });
  });
});
