// The TypeScript node agent passes the kit, run as a user runs it: `fleetlink conformance node --bin …` from a
// checkout, one PASS line per scenario and exit code 0.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";
import { SCENARIOS } from "../../src/conformance/kit.ts";
import { CLI, ROOT, tsAgent } from "./helpers.ts";

const run = promisify(execFile);

describe("conformance kit - TypeScript agent", () => {
  test("conformance kit - fleetlink node (WebSocket) passes every scenario through the CLI, exit code 0", async () => {
    // execFile rejects on a non-zero exit: resolving is the exit code 0.
    const { stdout } = await run(process.execPath, [CLI, "conformance", "node", "--bin", tsAgent()], {
      cwd: ROOT,
      timeout: 110_000,
    });
    for (const s of SCENARIOS) expect(stdout).toMatch(new RegExp(`^PASS ${s.name} \\(\\d+ ms\\)$`, "m"));
    expect(stdout).toMatch(/^conformant: 11 passed, 0 failed, 0 skipped \(\d+\.\d s\)$/m);
  }, 120_000);
});
