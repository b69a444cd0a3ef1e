// A new user's first minute on an older Node.js: the package imports (SQLite is loaded only when a SQLite store
// is opened) and the CLI says which Node.js it needs, instead of "No such built-in module: node:sqlite".
// The package is built with tsc, as published, and run with the system's older Node.js when there is one.
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { NODE_ENGINES, nodeVersionProblem } from "../../src/store/open.ts";

const run = promisify(execFile);
const root = join(import.meta.dirname, "../..");

/** The first `node` on PATH (or /usr/bin/node) older than 22: the system Node.js a new user may have. */
const oldNode = (() => {
  const found = spawnSync("which", ["-a", "node"], { encoding: "utf8" }).stdout.split("\n");
  for (const bin of [...found, "/usr/bin/node"].filter(Boolean)) {
    const v = spawnSync(bin, ["--version"], { encoding: "utf8" }).stdout?.trim();
    if (v && Number(v.slice(1).split(".")[0]) < 22) return { bin, version: v };
  }
  return undefined;
})();

describe("node version", () => {
  test("nodeVersionProblem - says which versions fleetlink needs, which one this is and how to get Node.js 24", () => {
    const p = nodeVersionProblem("v20.20.2", "/usr/bin/node")!;
    expect(p).toContain("Node.js 24.7 or newer (or 22.20 and later 22.x)");
    expect(p).toContain("this is Node.js 20.20.2 (/usr/bin/node)");
    expect(p).toMatch(/nvm install 24/);
    expect(p).toMatch(/npm ci/);
    for (const v of ["18.20.0", "22.5.0", "22.19.0", "23.11.0", "24.0.0", "24.6.0"])
      expect(nodeVersionProblem(v), v).toBeDefined();
    for (const v of ["22.20.0", "22.23.5", "24.7.0", "24.21.0", "25.0.0", "v26.1.0"])
      expect(nodeVersionProblem(v), v).toBeUndefined();
    expect(nodeVersionProblem()).toBeUndefined();
  });

  test("package.json's engines states the same floor as the check", () => {
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
    expect(pkg.engines.node).toBe(NODE_ENGINES);
  });

  test("importing the package loads no node:sqlite until a store is opened (memory: is SQLite too)", async () => {
    const script = `
      const m = await import(${JSON.stringify(join(root, "src/index.ts"))});
      const sqlite = () => process.moduleLoadList.some((x) => /sqlite/.test(x));
      const before = sqlite();
      const s = await m.openStore("memory:");
      await s.close();
      console.log(JSON.stringify({ before, afterMemory: sqlite() }));`;
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
      cwd: root,
      timeout: 30_000,
    });
    expect(JSON.parse(stdout)).toEqual({ before: false, afterMemory: true });
  });
});

describe.skipIf(!oldNode)(`on the system's older Node.js (${oldNode?.bin} ${oldNode?.version})`, () => {
  let dir = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "fleetlink-oldnode-"));
    // The published build; errors elsewhere in the tree (others' work in progress) do not stop tsc emitting.
    try {
      execFileSync(
        process.execPath,
        [
          join(root, "node_modules/typescript/bin/tsc"),
          "-p",
          "tsconfig.build.json",
          "--outDir",
          join(dir, "dist"),
        ],
        { cwd: root, stdio: "pipe", timeout: 120_000 },
      );
    } catch {}
    readFileSync(join(dir, "dist/index.js"));
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "fleetlink-test", type: "module" }));
    symlinkSync(join(root, "node_modules"), join(dir, "node_modules"));
    mkdirSync(join(dir, "data"));
  }, 150_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("import { Fleet } works; a SQLite or memory: store says which Node.js it needs", async () => {
    writeFileSync(
      join(dir, "try.mjs"),
      `import { Fleet, createHub, openStore } from "./dist/index.js";
       const out = { fleet: typeof Fleet, hub: typeof createHub };
       try { await openStore("memory:"); } catch (e) { out.memory = { code: e.code, message: e.message }; }
       try { await openStore("sqlite:./data/fleet.db"); } catch (e) { out.sqlite = { code: e.code, message: e.message }; }
       console.log(JSON.stringify(out));`,
    );
    const { stdout } = await run(oldNode!.bin, ["try.mjs"], { cwd: dir, timeout: 30_000 });
    const out = JSON.parse(stdout);
    expect(out).toMatchObject({ fleet: "function", hub: "function" });
    expect(out.memory.code).toBe("FLEETLINK_E_UNSUPPORTED_STORE");
    expect(out.sqlite.code).toBe("FLEETLINK_E_UNSUPPORTED_STORE");
    expect(out.sqlite.message).toContain(`this is Node.js ${oldNode!.version.slice(1)}`);
    expect(out.sqlite.message).toContain("Node.js 24.7 or newer");
    expect(() => readFileSync(join(dir, "data/fleet.db"))).toThrow();
  });

  test("the CLI says which Node.js it needs and how to get it, for every command", async () => {
    for (const args of [["--version"], ["serve"], ["store", "stats"]]) {
      const r = await run(oldNode!.bin, [join(dir, "dist/cli/main.js"), ...args], {
        cwd: join(dir, "data"),
        timeout: 30_000,
      }).then(
        () => ({ code: 0, stderr: "" }),
        (e: { code: number; stderr: string }) => e,
      );
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.stderr).toContain("fleetlink needs Node.js 24.7 or newer");
      expect(r.stderr).toContain(`this is Node.js ${oldNode!.version.slice(1)}`);
      expect(r.stderr).toContain("https://nodejs.org");
      expect(r.stderr).not.toMatch(/No such built-in module|ERR_/);
    }
  });
});
