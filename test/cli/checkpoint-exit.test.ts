// `fleetlink checkpoint push` and `pull` of a fleet run, as OS processes against an in-process hub: a push or
// pull that did not end ok on every host exits 7 (incomplete) with the failed hosts on stderr and the status
// JSON still on stdout; one still running when --timeout runs out exits 7 too.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.ts";
import type { OpStatus } from "../../src/protocol/checkpoint-types.ts";
import { type CheckpointFleet, startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";
import { TOKEN } from "../helpers/fleet.ts";
import { cli } from "./cli-run.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let f: CheckpointFleet;
const behave = { snapshot: "ok" as "ok" | "throw" | "slow", restore: "ok" as "ok" | "throw" };
beforeAll(async () => {
  f = await startCheckpointFleet();
}, 30_000);
afterAll(() => f?.close());

describe("fleetlink checkpoint push/pull exit status", () => {
  test("7 incomplete - a host that fails a push or pull, a host that is down, a push still running at --timeout", async () => {
    const good = await f.node("good", { bytes: 64 });
    const flaky = await f.node("flaky", {
      state: {
        snapshot: async () => {
          if (behave.snapshot === "throw") throw new Error("disk on fire");
          if (behave.snapshot === "slow") await sleep(3000);
          return new Uint8Array([1, 2, 3]);
        },
        restore: () => {
          if (behave.restore === "throw") throw new Error("cannot restore here");
        },
      },
    });
    const run = await f.fleet.createRun();
    await f.fleet.checkpoints.assign(run, [good.agent.nodeId!, flaky.agent.nodeId!]);
    const ckpt = (...a: string[]) =>
      cli(["checkpoint", ...a, "--run", run.id, "--hub", f.url, "--token", TOKEN]);
    const json = (stdout: string) => JSON.parse(stdout) as OpStatus;

    const ok = await ckpt("push");
    expect(ok.code, ok.stderr).toBe(ExitCode.ok);
    expect(json(ok.stdout)).toMatchObject({ status: "ok" });

    behave.snapshot = "throw";
    const push = await ckpt("push");
    expect(push.code, push.stderr).toBe(ExitCode.incomplete);
    expect(json(push.stdout)).toMatchObject({
      status: "error",
      hosts: [{ status: "ok" }, { status: "error" }],
    });
    expect(push.stderr).toContain(`host 1 (flaky (…${flaky.agent.nodeId!.slice(-8)})): internal: `);
    expect(push.stderr).toContain("disk on fire");
    expect(push.stderr).toMatch(
      /^fleetlink: FLEETLINK_E_INCOMPLETE_CALL: push \S+ failed on 1 of 2 hosts \(host 1: internal\)$/m,
    );

    behave.restore = "throw";
    const pull = await ckpt("pull", "--id", "latest");
    expect(pull.code, pull.stderr).toBe(ExitCode.incomplete);
    expect(json(pull.stdout)).toMatchObject({ status: "error", id: json(ok.stdout).id });
    expect(pull.stderr).toContain("cannot restore here");
    expect(pull.stderr).toMatch(/FLEETLINK_E_INCOMPLETE_CALL: pull \S+ failed on 1 of 2 hosts/);

    behave.snapshot = "slow";
    const late = await ckpt("push", "--timeout", "1s");
    expect(late.code, late.stderr).toBe(ExitCode.incomplete);
    expect(json(late.stdout)).toMatchObject({ status: "in_progress" });
    expect(late.stderr).toMatch(
      /FLEETLINK_E_MESSAGE_EXPIRED: push \S+ still in progress after 1000 ms .*fleetlink checkpoint status --run /,
    );
    for (let i = 0; i < 100 && (await f.fleet.checkpoints.status(run)).push.status === "in_progress"; i++)
      await sleep(50);

    behave.snapshot = "ok";
    await flaky.agent.stop({ timeoutMs: 100 });
    const down = await ckpt("push");
    expect(down.code, down.stderr).toBe(ExitCode.incomplete);
    expect(json(down.stdout).hosts[1]).toMatchObject({
      status: "error",
      error: { kind: "host_unavailable" },
    });
    expect(down.stderr).toMatch(
      /FLEETLINK_E_INCOMPLETE_CALL: push \S+ failed on 1 of 2 hosts \(host 1: host_unavailable\)/,
    );
    // A host that is down: what to do about it, and no "missed its heartbeat window" for a node that left.
    expect(down.stderr).toMatch(
      /start its node again on its identity file and run the push again, or give the host a standby/,
    );
    expect(down.stderr).not.toMatch(/missed its heartbeat window or was unregistered/);
  }, 90_000);
});
