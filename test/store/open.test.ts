import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";
import { isFleetlinkError } from "../../src/protocol/errors.ts";
import { openStore, optionalPackage } from "../../src/store/open.ts";

const run = promisify(execFile);
const root = join(import.meta.dirname, "../..");

describe("openStore", () => {
  test("memory: - each call is a fresh private store, and store options apply", async () => {
    const a = await openStore("memory:", { clock: () => 5_000, leaseMs: 77 });
    const b = await openStore("memory:");
    try {
      const run1 = await a.createRun();
      expect(run1.createdAt).toBe(5_000);
      expect(a.options.leaseMs).toBe(77);
      await expect(b.getRun(run1.id)).rejects.toMatchObject({ code: "FLEETLINK_E_RUN_NOT_FOUND" });
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("optional packages - a missing one is UNSUPPORTED_STORE naming it and how to install it", async () => {
    const name = "fleetlink-no-such-package";
    const e = await optionalPackage(name, "a test store", () => import(name)).catch((x: unknown) => x);
    expect(isFleetlinkError(e, "UNSUPPORTED_STORE")).toBe(true);
    expect((e as Error).message).toBe(
      `a test store needs the ${name} package, which is not installed: npm install ${name}`,
    );
    // Another package missing (a dependency of the one asked for), or any other failure, is passed on as it is.
    const other = await optionalPackage("pg", "x", () => import(name)).catch((x: unknown) => x);
    expect((other as { code?: string }).code).toBe("ERR_MODULE_NOT_FOUND");
    const boom = new Error("boom");
    await expect(optionalPackage("pg", "x", () => Promise.reject(boom))).rejects.toBe(boom);
  });

  test("pg - loaded only for a postgres:// URL; without it such a URL says `npm install pg`", async () => {
    // A resolve hook that makes `pg` missing, as in an install without the optional peer dependency.
    const hook = `export async function resolve(s, c, next) {
      if (s === "pg") { const e = new Error("Cannot find package 'pg' imported from " + c.parentURL); e.code = "ERR_MODULE_NOT_FOUND"; throw e; }
      return next(s, c); }`;
    const script = `
      import { register } from "node:module";
      register("data:text/javascript," + encodeURIComponent(${JSON.stringify(hook)}));
      const { openStore } = await import(${JSON.stringify(join(root, "src/store/open.ts"))});
      const s = await openStore("memory:");
      await s.close();
      // Opening memory: under the hook shows that it does not load pg.
      const out = { memory: "ok" };
      try { await openStore("postgres://127.0.0.1:1/none"); } catch (e) { out.code = e.code; out.message = e.message; }
      console.log(JSON.stringify(out));`;
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
      cwd: root,
      timeout: 30_000,
    });
    expect(JSON.parse(stdout)).toEqual({
      memory: "ok",
      code: "FLEETLINK_E_UNSUPPORTED_STORE",
      message: "a PostgreSQL store needs the pg package, which is not installed: npm install pg",
    });
  });
});
