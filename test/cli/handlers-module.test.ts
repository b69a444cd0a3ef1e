// `fleetlink node --handlers <module>`: what is read as handlers, and the two mistakes that would otherwise start
// a node whose every call fails with "no handler for method …": a --state module given as --handlers, and an
// `export const handler` (singular).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, test } from "vitest";
import { loadHandlers } from "../../src/cli/node.ts";

const dir = mkdtempSync(join(tmpdir(), "fleetlink-handlers-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const mod = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

test("handlers module - the handlers export, the default export, or loose function exports", async () => {
  expect(
    Object.keys(await loadHandlers(mod("a.mjs", "export const handlers = { square: (x) => x * x };"))),
  ).toEqual(["square"]);
  expect(Object.keys(await loadHandlers(mod("b.mjs", "export default { add: (x) => x };")))).toEqual(["add"]);
  expect(
    Object.keys(await loadHandlers(mod("c.mjs", "export const ping = () => 1; export const n = 3;"))),
  ).toEqual(["ping"]);
});

test("handlers module - a --state module given as --handlers is refused, naming --state", async () => {
  const p = mod(
    "state.mjs",
    "export const state = { total: 0 }; export const snapshot = () => '{}'; export async function restore() {}",
  );
  await expect(loadHandlers(p)).rejects.toThrow(
    /exports snapshot and restore, a --state module; give it as --state/,
  );
});

test("handlers module - `export const handler` (singular) is refused with the fix; no functions at all too", async () => {
  await expect(
    loadHandlers(mod("d.mjs", "export const handler = { square: (x) => x * x };")),
  ).rejects.toThrow(/exports `handler` \(an object\), not `handlers`/);
  await expect(loadHandlers(mod("e.mjs", "export const x = 1;"))).rejects.toThrow(
    /exports no handler functions/,
  );
});
