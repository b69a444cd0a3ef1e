// Flags are checked before anything starts: a bad value is refused naming the flag, and secrets stay secret.
import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, test } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.ts";

const CLI = join(import.meta.dirname, "../../src/cli/main.ts");
const dir = mkdtempSync(join(tmpdir(), "fleetlink-flags-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cli = async (...args: string[]) => {
  try {
    const r = await promisify(execFile)(process.execPath, [CLI, ...args], { cwd: dir, timeout: 20_000 });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr };
  }
};

describe("CLI flags", () => {
  test("flags - bad numbers, sizes, durations and rates are refused naming the flag, and nothing starts", async () => {
    const cases: [string[], RegExp][] = [
      [["serve", "--port", "abc"], /--port/],
      [["serve", "--port", "70000"], /--port/],
      [["serve", "--max-payload", "lots"], /--max-payload/],
      [["serve", "--enroll-rate", "10"], /--enroll-rate/],
      [["serve", "--heartbeat", "5s"], /--heartbeat/],
      [
        ["serve", "--checkpoint-interval", "3", "--checkpoint-store", `file://${dir}/c`],
        /--checkpoint-interval/,
      ],
      [["tokens", "create", "--ttl", "5", "--token", "t"], /--ttl/],
      [["tokens", "create", "--uses", "0", "--token", "t"], /--uses/],
    ];
    for (const [args, msg] of cases) {
      const r = await cli(...args);
      expect({ args, code: r.code }).toEqual({ args, code: ExitCode.usage });
      expect(r.out).toMatch(msg);
      expect(r.out).not.toMatch(/listening on/);
    }
  });

  test("secrets - equal admin and enrollment tokens are refused; a token file others can read is refused", async () => {
    const same = await cli("serve", "--port", "0", "--token", "same-secret", "--enroll-token", "same-secret");
    expect(same.code).toBe(ExitCode.usage);
    expect(same.out).toMatch(/must differ/);
    const file = join(dir, "admin.token");
    writeFileSync(file, "a-secret\n");
    chmodSync(file, 0o644);
    const open = await cli("serve", "--port", "0", "--token-file", file);
    expect(open.code).toBe(ExitCode.usage);
    expect(open.out).toMatch(/readable by others/);
  });
});
