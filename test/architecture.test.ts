// The layout's rules, read from the code itself: every import of every file under src/ (static, type-only,
// re-exports and dynamic `import()`) forms a graph that must have no circle and no upward edge, no file may
// outgrow 600 lines, and the light entry points must stay light.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, test } from "vitest";
import { runHooked } from "./helpers/hooked.ts";

const SRC = join(import.meta.dirname, "../src");

/**
 * Lower layers never import higher ones, and folders of one layer never import each other:
 *   util ← protocol ← store, stream, blob ← node, coordinator ← checkpoint ← hub ← maelstrom ← conformance ← cli ← src/index.ts
 * checkpoint sits above node and coordinator because it holds their plug-ins (the node agent's checkpoint
 * plug-in, the coordinator's checkpoint client types); hub above checkpoint because it serves checkpoint
 * routes. Each folder's index.ts (fleetlink/coordinator, /node, /hub, /checkpoints) belongs to its folder's layer.
 */
const LAYERS: readonly (readonly string[])[] = [
  ["util"],
  ["protocol"],
  ["store", "stream", "blob"],
  ["node", "coordinator"],
  ["checkpoint"],
  ["hub"],
  ["maelstrom"],
  ["conformance"],
  ["cli"],
  ["index.ts"],
];

/**
 * Known violations that other parts of issue 17 are removing right now: each entry must still occur (a stale
 * one fails, so that the list only shrinks). Empty it once those branches are merged.
 */
const PENDING = {
  /** Upward imports (`from -> to`, paths under src/). */
  imports: [] as string[],
  /** Files over the size limit, being split. */
  long: [] as string[],
};

const MAX_LINES = 600;

const files = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );

/** Every module a file names: `import`/`export … from`, `import type`, `import x = require`, `import()`. */
const importsOf = (text: string): string[] =>
  ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);

/** The import graph of src/, as paths relative to src/; imports of packages and of files outside src/ are left out. */
const graph = (root: string): Map<string, string[]> => {
  const g = new Map<string, string[]>();
  for (const file of files(root)) {
    const deps = importsOf(readFileSync(file, "utf8"))
      .filter((s) => s.startsWith("."))
      .map((s) => relative(root, resolve(dirname(file), s)))
      .filter((p) => !p.startsWith(".."));
    g.set(relative(root, file), [...new Set(deps)]);
  }
  return g;
};

const layerOf = (path: string): number => {
  const top = path.split("/")[0]!;
  const i = LAYERS.findIndex((l) => l.includes(top));
  if (i < 0) throw new Error(`${path}: its folder ${top}/ has no place in LAYERS (architecture.test.ts)`);
  return i;
};

const folderOf = (path: string) => path.split("/")[0]!;

/** Imports that go up, or sideways into another folder of the same layer. */
const upwardImports = (g: Map<string, string[]>): string[] =>
  [...g].flatMap(([from, deps]) =>
    deps
      .filter((to) => folderOf(to) !== folderOf(from) && layerOf(to) >= layerOf(from))
      .map((to) => `${from} -> ${to}`),
  );

/** Every circle (a strongly connected component of more than one file, or a file importing itself). */
const circles = (g: Map<string, string[]>): string[][] => {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of g.get(v) ?? []) {
      if (!g.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || g.get(v)?.includes(v)) out.push(scc.sort());
    }
  };
  for (const v of g.keys()) if (!index.has(v)) visit(v);
  return out;
};

/** The graph without the pending edges (a circle made by one of them goes with it). */
const withoutPending = (g: Map<string, string[]>) =>
  new Map(
    [...g].map(([from, deps]) => [from, deps.filter((to) => !PENDING.imports.includes(`${from} -> ${to}`))]),
  );

describe("architecture", () => {
  const g = graph(SRC);

  test("imports - every file's imports are read, type-only and dynamic ones included", () => {
    // The reader itself: a rule that never sees an import cannot fail.
    const sample = [
      'import type { A } from "./a.ts";',
      'import {\n  b,\n  type C,\n} from "../b.ts";',
      'export * from "./c.ts";',
      'export { d } from "./d.ts";',
      'import "./e.ts";',
      'const f = await import("./f.ts");',
      'type G = typeof import("./g.ts");',
      "const h = \"import x from './not-an-import.ts'\";",
    ].join("\n");
    expect(importsOf(sample)).toEqual(
      expect.arrayContaining(["./a.ts", "../b.ts", "./c.ts", "./d.ts", "./e.ts", "./f.ts", "./g.ts"]),
    );
    expect(importsOf(sample)).not.toContain("./not-an-import.ts");
    expect(g.get("index.ts")).toContain("coordinator/index.ts");
    expect(g.get("checkpoint/open.ts")).toContain("checkpoint/s3-store.ts"); // a dynamic import
  });

  test("circles - no file imports itself through others (type imports count)", () => {
    expect(circles(withoutPending(g))).toEqual([]);
  });

  test("layers - no import goes up or sideways (util ← protocol ← store, stream ← … ← cli)", () => {
    const found = upwardImports(g);
    expect(found.filter((e) => !PENDING.imports.includes(e))).toEqual([]);
    const stale = PENDING.imports.filter((e) => !found.includes(e));
    expect(stale, "PENDING.imports entries that no longer occur: remove them").toEqual([]);
  });

  test(`size - no file in src/ has more than ${MAX_LINES} lines`, () => {
    const lines = new Map(
      [...g.keys()].map((p) => [p, readFileSync(join(SRC, p), "utf8").trimEnd().split("\n").length]),
    );
    const long = [...lines].filter(([, n]) => n > MAX_LINES).map(([p]) => p);
    expect(long.filter((p) => !PENDING.long.includes(p)).map((p) => `${p}: ${lines.get(p)} lines`)).toEqual(
      [],
    );
    const stale = PENDING.long.filter((p) => !long.includes(p));
    expect(stale, "PENDING.long entries no longer over the limit: remove them").toEqual([]);
  });

  test("the checks fail on a circle, an upward and a sideways import", () => {
    const bad = new Map([
      ["protocol/a.ts", ["store/b.ts"]],
      ["store/b.ts", ["protocol/a.ts"]],
      ["stream/c.ts", ["store/b.ts"]],
      ["cli/d.ts", ["cli/d.ts"]],
    ]);
    expect(circles(bad)).toEqual([["protocol/a.ts", "store/b.ts"], ["cli/d.ts"]]);
    expect(upwardImports(bad)).toEqual(["protocol/a.ts -> store/b.ts", "stream/c.ts -> store/b.ts"]);
  });
});

/** The packages (and src/ folders) a fresh `node …args` process loads. */
const loaded = (args: string[]): { packages: Set<string>; folders: Set<string> } => {
  const hook = `import { registerHooks } from "node:module";
    import { writeSync } from "node:fs";
    const seen = new Set();
    registerHooks({ load(url, ctx, next) { seen.add(url); return next(url, ctx); } });
    process.on("exit", () => writeSync(3, JSON.stringify([...seen])));`;
  const r = runHooked(hook, args, { extraFd: true });
  expect(r.status, r.stderr).toBe(0);
  const urls = JSON.parse(String(r.output[3])) as string[];
  const packages = new Set<string>();
  const folders = new Set<string>();
  for (const u of urls) {
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u)?.[1];
    if (pkg) packages.add(pkg);
    else if (u.includes("/src/")) folders.add(u.split("/src/")[1]!.split("/")[0]!);
  }
  return { packages, folders };
};

const importing = (entry: string) =>
  loaded([
    "--input-type=module",
    "-e",
    `await import(${JSON.stringify(new URL(`../src/${entry}`, import.meta.url).href)});`,
  ]);

describe("light entry points", () => {
  const HEAVY = ["fastify", "@fastify/swagger", "@fastify/swagger-ui", "pg", "@aws-sdk/client-s3", "pino"];

  test("fleetlink/coordinator - loads no HTTP server, store driver, logger or AWS SDK", () => {
    const { packages, folders } = importing("coordinator/index.ts");
    expect(HEAVY.filter((p) => packages.has(p))).toEqual([]);
    expect([...folders].filter((f) => ["hub", "store", "checkpoint", "cli"].includes(f))).toEqual([]);
  });

  test("fleetlink/node - loads no HTTP server, store driver or AWS SDK", () => {
    const { packages, folders } = importing("node/index.ts");
    expect(HEAVY.filter((p) => packages.has(p))).toEqual([]);
    expect([...folders].filter((f) => ["hub", "store", "coordinator", "cli"].includes(f))).toEqual([]);
  });

  test("fleetlink/checkpoints - loads no HTTP server, store driver, coordinator or AWS SDK", () => {
    const { packages, folders } = importing("checkpoint/index.ts");
    expect(HEAVY.filter((p) => packages.has(p))).toEqual([]);
    expect([...folders].filter((f) => ["hub", "store", "coordinator", "cli"].includes(f))).toEqual([]);
  });

  test("fleetlink/hub - loads Fastify but not swagger-ui, pg or the AWS SDK until they are used", () => {
    const { packages } = importing("hub/index.ts");
    expect(packages.has("fastify")).toBe(true);
    expect(["@fastify/swagger-ui", "pg", "@aws-sdk/client-s3"].filter((p) => packages.has(p))).toEqual([]);
  });

  test("cli - `fleetlink --version` loads commander and no command's code", () => {
    const { packages, folders } = loaded([join(SRC, "cli/main.ts"), "--version"]);
    expect(packages.has("commander")).toBe(true);
    expect([...HEAVY, "@sinclair/typebox", "ws", "smol-toml"].filter((p) => packages.has(p))).toEqual([]);
    expect([...folders].filter((f) => ["hub", "coordinator", "node", "stream"].includes(f))).toEqual([]);
  });

  test("cli - `fleetlink maelstrom node broadcast` loads the Maelstrom runtime and nothing of the hub or SDK", () => {
    // stdin is at its end at once: the node starts, reads nothing and exits.
    const { packages, folders } = loaded([join(SRC, "cli/main.ts"), "maelstrom", "node", "broadcast"]);
    expect(folders.has("maelstrom")).toBe(true);
    expect([...HEAVY, "@sinclair/typebox", "ws", "smol-toml"].filter((p) => packages.has(p))).toEqual([]);
    expect([...folders].filter((f) => ["hub", "coordinator", "node"].includes(f))).toEqual([]);
  });
});
