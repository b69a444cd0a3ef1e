// `fleetlink checkpoint` validates its numeric and duration flags before doing anything, naming the flag.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, test } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.ts";

const run = promisify(execFile);
const CLI = join(import.meta.dirname, "../../src/cli/main.ts");
const dir = mkdtempSync(join(tmpdir(), "fleetlink-cli-flags-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cli = (args: string[]) =>
  run(process.execPath, [CLI, "checkpoint", ...args], { timeout: 20_000 }).then(
    (r) => ({ code: 0, stderr: r.stderr }),
    (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
  );

describe("fleetlink checkpoint flags", () => {
  test("cli - bad --keep, --timeout and --standby values are refused with the flag's name", async () => {
    const db = ["--db", `sqlite:${join(dir, "never.db")}`, "--store", `file://${join(dir, "objs")}`];
    const fleet = ["--hub", "http://127.0.0.1:9", "--token", "t", "--run", "r"];
    const cases: [string[], RegExp][] = [
      [["push", ...db, "--keep", "abc"], /--keep: must be an integer from 1 to 1000/],
      [["push", ...db, "--keep", "0"], /--keep: must be an integer from 1 to 1000/],
      [["push", ...db, "--keep", "2.5"], /--keep: must be an integer from 1 to 1000/],
      [["push", ...fleet, "--timeout", "3"], /--timeout: "3" is not a duration like 30s, 5m or 24h/],
      [["pull", ...fleet, "--timeout", "soon"], /--timeout: "soon" is not a duration/],
      [["pull", ...fleet, "--timeout", "500ms"], /--timeout: must be between 1s and 7d/],
      [
        ["assign", ...fleet, "--hosts", "a", "--standby", "x"],
        /--standby: "x" is not HOST=NODE \(a node id or name\)/,
      ],
      [["assign", ...fleet, "--hosts", "a", "--standby", "-1=n"], /--standby: must be an integer from 0/],
      [
        ["pull", ...fleet, "--id", "nosuch"],
        /--id: "nosuch" is neither a checkpoint id \(a UUID: fleetlink checkpoint list/,
      ],
      [["pull", ...db, "--id", "lastest"], /--id: "lastest" is neither a checkpoint id .* nor latest/],
    ];
    for (const [args, want] of cases) {
      const r = await cli(args);
      expect(r.code, args.join(" ")).toBe(ExitCode.usage);
      expect(r.stderr, args.join(" ")).toMatch(want);
    }
    // Refused before anything was opened or created.
    expect(existsSync(join(dir, "never.db"))).toBe(false);
    expect(existsSync(join(dir, "objs"))).toBe(false);
  }, 60_000);
});
