// The README's commands and examples, run as a user would.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";

const run = promisify(execFile);
const root = join(import.meta.dirname, "..");

describe("README", () => {
  test("examples/sdk.ts runs and prints its calls", async () => {
    const { stdout } = await run(process.execPath, [join(root, "examples/sdk.ts")], {
      cwd: root,
      timeout: 30_000,
    });
    expect(stdout).toContain("add → [ 5, 5 ]");
    expect(stdout).toContain("fail → FLEETLINK_E_INCOMPLETE_CALL");
    expect(stdout).toContain("broadcast → [ 10, 10 ]");
  }, 40_000);

  test("the README's SDK section is examples/sdk.ts verbatim (but for the import)", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const example = readFileSync(join(root, "examples/sdk.ts"), "utf8")
      .split("\n")
      .filter((l, i, all) => !(l.startsWith("//") && all.slice(0, i).every((x) => x.startsWith("//"))))
      .join("\n")
      .replace('from "../src/index.ts"', 'from "fleetlink"')
      .trim();
    expect(readme).toContain(example);
  });

  test("examples/blobs.ts: 8 MiB in and out as bytes, and a timed-out call's handler told to stop", async () => {
    const { stdout } = await run(process.execPath, [join(root, "examples/blobs.ts")], {
      cwd: root,
      timeout: 30_000,
    });
    expect(stdout).toContain("train → node hashed the same bytes");
    expect(stdout).toContain("train → update of 8388608 bytes, first byte 255");
    expect(stdout).toContain("slow → handler stopped: FLEETLINK_E_CANCELLED");
  }, 40_000);

  test("the README's bytes section is examples/blobs.ts verbatim (but for the import)", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const example = readFileSync(join(root, "examples/blobs.ts"), "utf8")
      .split("\n")
      .filter((l, i, all) => !(l.startsWith("//") && all.slice(0, i).every((x) => x.startsWith("//"))))
      .join("\n")
      .replace('from "../src/index.ts"', 'from "fleetlink"')
      .trim();
    expect(readme).toContain(example);
  });

  test("fleetlink demo: quorum calls, a crashed node's NODE_UNAVAILABLE, a broadcast reaching it after restart", async () => {
    const { stdout } = await run(process.execPath, [join(root, "src/cli/main.ts"), "demo"], {
      cwd: root,
      timeout: 60_000,
    });
    expect(stdout).toMatch(/quorum=first +→ 1 reply = 49/);
    expect(stdout).toMatch(/quorum=majority → 2 replies = 49/);
    expect(stdout).toMatch(/quorum=all +→ 3 replies = 49/);
    expect(stdout).toMatch(/node-2 FLEETLINK_E_NODE_UNAVAILABLE/);
    expect(stdout).toMatch(/replied by 3\/3 nodes; node-2 got it after restart: \{"applied":2/);
  }, 70_000);
});
