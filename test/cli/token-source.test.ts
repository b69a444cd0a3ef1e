// A refused admin token says where it came from (--token, --token-file, FLEETLINK_TOKEN_FILE, a profile), so the
// fix is not a guess.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.ts";
import { startFleet, type TestFleet } from "../helpers/fleet.ts";
import { cli } from "./cli-run.ts";

let f: TestFleet;
const dir = mkdtempSync(join(tmpdir(), "fleetlink-token-src-"));
const file = join(dir, "old.token");
beforeAll(async () => {
  f = await startFleet();
  writeFileSync(file, "not-the-token\n");
  chmodSync(file, 0o600);
});
afterAll(async () => {
  await f.close();
  rmSync(dir, { recursive: true, force: true });
});

test("token source - a refused token names where it came from: flag, file flag, environment", async () => {
  const flag = await cli(["nodes", "list", "--hub", f.url, "--token", "wrong"]);
  expect(flag.code, flag.stderr).toBe(ExitCode.auth);
  expect(flag.stderr).toMatch(/FLEETLINK_E_UNAUTHORIZED: .*\(the token came from --token\)/);
  const fileFlag = await cli(["runs", "list", "--hub", f.url, "--token-file", file]);
  expect(fileFlag.code, fileFlag.stderr).toBe(ExitCode.auth);
  expect(fileFlag.stderr).toContain(`(the token came from --token-file ${file})`);
  const env = await cli(["call", "echo", "1", "--all", "--hub", f.url], {
    env: { FLEETLINK_TOKEN_FILE: file },
  });
  expect(env.code, env.stderr).toBe(ExitCode.auth);
  expect(env.stderr).toContain(`(the token came from FLEETLINK_TOKEN_FILE (${file}))`);
});
