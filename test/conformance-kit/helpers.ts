import { existsSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import type { KitReport } from "../../src/conformance/kit.ts";

export const ROOT = join(import.meta.dirname, "../..");
/** The kit's command line, as a user runs it from a checkout. */
export const CLI = join(ROOT, "src/cli/main.ts");
const q = (s: string) => JSON.stringify(s);

/** The mini node fixture, correct or with one defect. */
export const miniNode = (defect?: string): string =>
  `${q(process.execPath)} ${q(join(ROOT, "test/fixtures/nodes/mini-node.mjs"))}${defect ? ` --defect ${defect}` : ""}`;

/** The TypeScript agent with the conformance handlers, its identity in the kit's work dir. */
export const tsAgent = (extra = ""): string =>
  `${q(process.execPath)} ${q(CLI)} node --handlers ${q(join(ROOT, "examples/conformance-handlers.mjs"))} --identity "$FLEETLINK_WORK_DIR/identity.json" --log-level warn${extra}`;

/** The interpreter the Python node runs on: the system's (3.11), as in test/clients. */
const PYTHON = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

/** The Python node (clients/python) with its conformance handlers, as docs/conformance.md runs it. */
export const pythonNode = (): string =>
  `cd ${q(join(ROOT, "clients/python"))} && PYTHONDONTWRITEBYTECODE=1 exec ${PYTHON} -m fleetlink_node --handlers fleetlink_node.conformance`;

/** Every scenario passed (none failed, none was skipped). */
export const expectConformant = (r: KitReport): void => {
  expect(r.verdicts.filter((v) => v.outcome !== "pass")).toEqual([]);
  expect(r.ok).toBe(true);
};

/** Exactly these scenarios failed, each with a reason matching its pattern; the others passed. */
export const expectFailures = (r: KitReport, failures: Record<string, RegExp>): void => {
  expect(r.verdicts.filter((v) => v.outcome === "skip")).toEqual([]);
  const failed = r.verdicts.filter((v) => v.outcome === "fail");
  expect(failed.map((v) => v.scenario).sort()).toEqual(Object.keys(failures).sort());
  for (const v of failed) expect(v.why).toMatch(failures[v.scenario]!);
  expect(r.ok).toBe(false);
};
