// Commands that take nodes take them by name or id, and print them as `name (…last 8 hex of the id)`.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.ts";
import { type CheckpointFleet, startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";
import { TOKEN } from "../helpers/fleet.ts";
import { cli, cliAll, failedWith } from "./cli-run.ts";

let f: CheckpointFleet;
let hub: string[];
let ids: Record<"alpha" | "beta" | "spare", string>;

beforeAll(async () => {
  f = await startCheckpointFleet();
  const handlers = () => ({
    fail: () => {
      throw new Error("refuses");
    },
  });
  const [a, b, s] = [
    await f.node("alpha", { handlers }),
    await f.node("beta", { handlers }),
    await f.node("spare", { handlers }),
  ];
  ids = { alpha: a.agent.nodeId!, beta: b.agent.nodeId!, spare: s.agent.nodeId! };
  hub = ["--hub", f.url, "--token", TOKEN];
}, 30_000);
afterAll(async () => {
  await f?.close();
});

const newRun = async () =>
  (
    (await (
      await fetch(`${f.url}/v1/runs`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } })
    ).json()) as { run: { id: string } }
  ).run.id;

describe("node references in the CLI", () => {
  test("checkpoint assign - --hosts and --standby take node names as well as ids", async () => {
    const run = await newRun();
    const r = await cli([
      "checkpoint",
      "assign",
      "--run",
      run,
      "--hosts",
      `alpha,${ids.beta}`,
      "--standby",
      "1=spare",
      ...hub,
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const roles = JSON.parse(r.stdout) as { hosts: { hostIdx: number; nodeId: string; standby: string[] }[] };
    expect(roles.hosts.map((h) => h.nodeId)).toEqual([ids.alpha, ids.beta]);
    expect(roles.hosts[1]!.standby).toEqual([ids.spare]);
  }, 30_000);

  test("checkpoint assign - an unknown name is NODE_NOT_FOUND naming its flag, and nothing is assigned", async () => {
    const run = await newRun();
    const [badHost, badStandby] = await cliAll([
      [["checkpoint", "assign", "--run", run, "--hosts", "alpha,ghost", ...hub]],
      [["checkpoint", "assign", "--run", run, "--hosts", "alpha", "--standby", "0=phantom", ...hub]],
    ]);
    expect(failedWith(badHost, "NODE_NOT_FOUND"), badHost.stderr).toBe(true);
    expect(badHost.code).toBe(ExitCode.notFound);
    expect(badHost.stderr).toMatch(/--hosts: no node with id or name "ghost"/);
    expect(badStandby.stderr).toMatch(/--standby: no node with id or name "phantom"/);
    const status = await cli(["checkpoint", "status", "--run", run, ...hub, "--json"]);
    expect(JSON.parse(status.stdout).roles).toBeNull();
  }, 30_000);

  test("call - failed nodes are named with the last 8 hex of their ids in the lines and in the error", async () => {
    const r = await cli(["call", "fail", "null", "--nodes", "alpha,beta", "--quorum", "all", ...hub]);
    expect(r.code).toBe(ExitCode.incomplete);
    const first = r.stdout.split("\n")[0]!;
    expect(first).toMatch(
      new RegExp(
        `^(alpha \\(…${ids.alpha.slice(-8)}\\)|beta \\(…${ids.beta.slice(-8)}\\)) {2}HANDLER_FAILED`,
      ),
    );
    expect(r.stderr).toMatch(/quorum all not met .*(alpha|beta) \(…[0-9a-f]{8}\): HANDLER_FAILED/);
    // Never the prefix: it is the enrollment time, the same for all three nodes here.
    expect(r.stdout).not.toContain(ids.alpha.slice(0, 8));
  }, 30_000);
});
