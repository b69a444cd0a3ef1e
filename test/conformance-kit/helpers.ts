import { join } from "node:path";
import { expect } from "vitest";
import type { KitReport, Verdict } from "../../src/conformance/kit.ts";

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

export const verdictOf = (r: KitReport, scenario: string): Verdict => {
  const v = r.verdicts.find((x) => x.scenario === scenario);
  if (!v) throw new Error(`no verdict for ${scenario}`);
  return v;
};

/**
 * Every scenario passed, except that version-refusal may be skipped on hubs without the `protocols` option
 * (protocol versioning not merged yet); once it is, the probe finds it and the scenario must pass.
 */
export const expectConformant = (r: KitReport): void => {
  const bad = r.verdicts.filter(
    (v) =>
      v.outcome === "fail" ||
      (v.outcome === "skip" &&
        !(v.scenario === "version-refusal" && /no `protocols` option/.test(v.why ?? ""))),
  );
  expect(bad).toEqual([]);
  expect(r.ok).toBe(true);
};

/** Exactly these scenarios failed, each with a reason matching its pattern; the others passed (or were skipped as above). */
export const expectFailures = (r: KitReport, failures: Record<string, RegExp>): void => {
  const failed = r.verdicts.filter((v) => v.outcome === "fail");
  expect(failed.map((v) => v.scenario).sort()).toEqual(Object.keys(failures).sort());
  for (const v of failed) expect(v.why).toMatch(failures[v.scenario]!);
  expect(r.ok).toBe(false);
};
