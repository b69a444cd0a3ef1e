// The README's commands and examples (and docs/sdk.md's bytes example), run as a user would.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, test } from "vitest";
import { blockOutput, freePort, runShell, tourBlocks, tourScript } from "./helpers/doc-shell.ts";

const run = promisify(execFile);
const root = join(import.meta.dirname, "..");
const home = mkdtempSync(join(tmpdir(), "fleetlink-readme-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

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
    // The call's end reaches the node either way: withdrawn when the coordinator gives up (CANCELLED), or expired by
    // the hub's sweep when its TTL, the same 500 ms, runs out first on a loaded machine (MESSAGE_EXPIRED).
    expect(stdout).toMatch(/^slow → handler stopped: FLEETLINK_E_(CANCELLED|MESSAGE_EXPIRED)$/m);
  }, 40_000);

  test("docs/sdk.md's bytes section is examples/blobs.ts verbatim (but for the import)", () => {
    const readme = readFileSync(join(root, "docs/sdk.md"), "utf8");
    const example = readFileSync(join(root, "examples/blobs.ts"), "utf8")
      .split("\n")
      .filter((l, i, all) => !(l.startsWith("//") && all.slice(0, i).every((x) => x.startsWith("//"))))
      .join("\n")
      .replace('from "../src/index.ts"', 'from "fleetlink"')
      .trim();
    expect(readme).toContain(example);
  });

  test("the README's CLI tour runs as written: a SQLite hub, an enrollment token, 3 nodes, a quorum call, status", async () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const blocks = tourBlocks(readme);
    expect(blocks).toHaveLength(1);
    // `fleetlink` on PATH as docs/getting-started.md step 1 makes it: this checkout's CLI on this Node.js.
    mkdirSync(join(home, ".local/bin"), { recursive: true });
    writeFileSync(
      join(home, ".local/bin/fleetlink"),
      `#!/bin/sh\nexec "${process.execPath}" "${join(root, "src/cli/main.ts")}" "$@"\n`,
      { mode: 0o755 },
    );
    const work = join(home, "work");
    mkdirSync(work);
    const port = await freePort();
    const script = `export PATH="$HOME/.local/bin:$PATH"\n${tourScript(blocks).replaceAll("7070", String(port))}`;
    const { code, out } = await runShell(script, { cwd: work, home, timeoutMs: 50_000 });
    const logs = () => {
      const hubLog = join(home, "fleet-quick", "hub.log");
      return `${out}\n--- hub.log\n${existsSync(hubLog) ? readFileSync(hubLog, "utf8").slice(-2000) : "(none)"}`;
    };
    expect(code, logs()).toBe(0);
    const tour = blockOutput(out, 1);
    expect(tour.match(/^worker-\d \(…[0-9a-f]{8}\)\s+ok\s+\d+ ms\s+64$/gm), logs()).toHaveLength(3);
    expect(tour).toMatch(/quorum all met: 3 replies, 0 failed/);
    expect(tour).toMatch(/^store:\s+sqlite$/m);
    expect(tour).toMatch(/^nodes:\s+3 \(online 3\)$/m);
    expect(out).toContain("::done::");
  }, 60_000);

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
