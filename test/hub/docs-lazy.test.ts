// The reference UI at /docs is loaded on its first request, not when a hub starts: a fresh process records
// every module it loads and shows swagger-ui arriving only with the first GET /docs.
import { describe, expect, test } from "vitest";
import { runHookedScript } from "../helpers/hooked.ts";

const src = (p: string) => JSON.stringify(new URL(`../../src/${p}`, import.meta.url).href);

describe("docs", () => {
  test("docs - swagger-ui is loaded on the first request to /docs; its answers pass through", () => {
    const hook = `import { registerHooks } from "node:module";
      globalThis.loaded = [];
      registerHooks({ load(url, ctx, next) { globalThis.loaded.push(url); return next(url, ctx); } });`;
    const script = `
      const { createHub } = await import(${src("hub/server.ts")});
      const { openStore } = await import(${src("store/open.ts")});
      const ui = () => globalThis.loaded.some((u) => u.includes("/@fastify/swagger-ui/"));
      const hub = createHub({ store: await openStore("memory:"), token: "t", enrollToken: "e", dashboard: false });
      await hub.app.ready();
      const out = { afterReady: ui() };
      let res = await hub.app.inject({ method: "GET", url: "/docs" });
      out.afterDocs = ui();
      if (res.statusCode >= 300 && res.statusCode < 400)
        res = await hub.app.inject({ method: "GET", url: res.headers.location });
      out.page = { status: res.statusCode, type: res.headers["content-type"], csp: res.headers["content-security-policy"] };
      const json = await hub.app.inject({ method: "GET", url: "/docs/json" });
      out.json = { status: json.statusCode, title: json.json().info?.title };
      const head = await hub.app.inject({ method: "HEAD", url: "/docs/static/swagger-ui-bundle.js" });
      out.head = { status: head.statusCode, length: Number(head.headers["content-length"]), body: head.body.length };
      const missing = await hub.app.inject({ method: "GET", url: "/docs/static/no-such-file.js" });
      out.missing = { status: missing.statusCode, code: missing.json().error?.code };
      await hub.close();
      process.stdout.write(JSON.stringify(out));`;
    const r = runHookedScript(hook, script);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.afterReady).toBe(false);
    expect(out.afterDocs).toBe(true);
    expect(out.page.status).toBe(200);
    expect(out.page.type).toMatch(/text\/html/);
    expect(out.page.csp).toBeTruthy(); // swagger-ui's own headers are passed through
    expect(out.json).toEqual({ status: 200, title: "fleetlink hub" });
    expect(out.head.status).toBe(200);
    expect(out.head.length).toBeGreaterThan(100_000);
    expect(out.head.body).toBe(0);
    // Not found under /docs answers like any other unknown route of the hub.
    expect(out.missing).toEqual({ status: 404, code: "FLEETLINK_E_ROUTE_NOT_FOUND" });
  });
});
