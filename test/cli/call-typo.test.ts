// A mistyped node name in `fleetlink call --nodes`: exit 5 (not found), the nearest live name, and where to look.
import { afterAll, beforeAll, expect, test } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";
import { cli } from "./cli-run.ts";

let f: TestFleet;
beforeAll(async () => {
  f = await startFleet();
  await f.node("worker-1", { echo: (p: unknown) => p });
  await f.node("worker-2", { echo: (p: unknown) => p });
});
afterAll(async () => {
  await f.close();
});

test("call --nodes - a mistyped name exits 5 naming the nearest live node and `nodes list`", async () => {
  const r = await cli([
    "call",
    "echo",
    "1",
    "--nodes",
    "worker-1,wroker-2",
    "--hub",
    f.url,
    "--token",
    TOKEN,
  ]);
  expect(r.code, r.stderr).toBe(ExitCode.notFound);
  expect(r.stderr).toMatch(
    /--nodes: no live node with id or name "wroker-2": did you mean worker-2\? \(fleetlink nodes list shows them\)/,
  );
});
