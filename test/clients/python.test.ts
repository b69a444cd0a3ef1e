import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { IncompleteCallError } from "../../src/coordinator/errors.ts";
import { cli } from "../cli/cli-run.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";
import { enrollTokenFor, type Proc, startHubProc } from "../helpers/procs.ts";
import { PY_CLIENT, PYTHON, type PyNode, startPyNode } from "./py-node.ts";

/** Waits for every addressed node, so each one's outcome (reply or error) is in the result. */
const everyNode = ({
  replies,
  errors,
  nodes,
}: {
  replies: ReadonlyMap<string, unknown>;
  errors: ReadonlyMap<string, unknown>;
  nodes: readonly string[];
}) => (replies.size + errors.size === nodes.length ? ("done" as const) : ("wait" as const));

describe("python node", () => {
  let fleet: TestFleet | undefined;
  const nodes: PyNode[] = [];
  const hubs: Proc[] = [];
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.kill("SIGKILL")));
    await Promise.all(hubs.splice(0).map((h) => h.kill("SIGKILL")));
    await fleet?.close();
    fleet = undefined;
  });

  test("python node - its unit tests pass on the system python3 (unittest, fake hub)", () => {
    const r = spawnSync(PYTHON, ["-m", "unittest", "discover", "-s", "tests"], {
      cwd: PY_CLIENT,
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
      encoding: "utf8",
      timeout: 120_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/Ran \d+ tests/);
  }, 130_000);

  test("python node - echo, fail and sleep round trip through a real hub with a TypeScript coordinator; SIGTERM leaves and exits 0", async () => {
    fleet = await startFleet();
    const py = await startPyNode({ hubs: [fleet.url], enrollToken: ENROLL_TOKEN, name: "py-e2e" });
    nodes.push(py);
    const run = await (await fleet.fleet()).createRun();
    const cfg = run.configuration([py.nodeId]);

    const echo = await cfg.call("echo", { a: [1, "two"] }, { quorum: "all", timeoutMs: 10_000 });
    expect(echo.replies.get(py.nodeId)).toEqual({ a: [1, "two"] });

    const fail = await cfg.call(
      "fail",
      { message: "broken on purpose" },
      { quorum: everyNode, timeoutMs: 10_000 },
    );
    const e = fail.errors.get(py.nodeId);
    expect(e?.code).toBe("FLEETLINK_E_HANDLER_FAILED");
    expect(e?.message).toContain("broken on purpose");

    const slept = await cfg.call("sleep", { ms: 300 }, { quorum: "all", timeoutMs: 10_000 });
    expect(slept.replies.get(py.nodeId)).toEqual({ slept: 300 });

    expect(py.calls().map((l) => l.split(" ")[2])).toEqual(["echo", "fail", "sleep"]);

    // A graceful stop: the handler in flight finishes and its reply arrives, then the node leaves.
    const late = cfg.call("sleep", { ms: 800 }, { quorum: "all", timeoutMs: 10_000 });
    await expect.poll(() => py.calls().length, { timeout: 5000 }).toBe(4);
    expect(await py.kill("SIGTERM")).toBe(0);
    expect((await late).replies.get(py.nodeId)).toEqual({ slept: 800 });
    // Offline at once after `leave`; at most its heartbeat window (2 s) later on a hub without it.
    await expect
      .poll(async () => (await fleet!.store.listNodes()).find((n) => n.id === py.nodeId)?.status, {
        timeout: 5000,
      })
      .toBe("offline");
    expect(py.output()).not.toMatch(/Traceback/);
  }, 60_000);

  test("python node - a HandlerError with the application's own code reaches the coordinator as appCode, in results, IncompleteCallError and the CLI", async () => {
    fleet = await startFleet();
    const py = await startPyNode({
      hubs: [fleet.url],
      enrollToken: ENROLL_TOKEN,
      name: "py-app",
      handlers: join(import.meta.dirname, "py_app_error_handlers.py"),
    });
    nodes.push(py);
    const run = await (await fleet.fleet()).createRun();
    const cfg = run.configuration([py.nodeId]);
    expect((await cfg.call("score", 4, { quorum: "all", timeoutMs: 10_000 })).replies.get(py.nodeId)).toBe(8);
    const bad = await cfg.call("score", "x", { quorum: everyNode, timeoutMs: 10_000 });
    const e = bad.errors.get(py.nodeId);
    expect(e).toMatchObject({ code: "FLEETLINK_E_HANDLER_FAILED", appCode: "APP_E_NOT_A_NUMBER" });
    expect(e?.message).toBe("score needs a number, got str");
    const incomplete = await cfg
      .call("score", "x", { quorum: "all", timeoutMs: 10_000 })
      .catch((x: unknown) => x);
    expect(incomplete).toBeInstanceOf(IncompleteCallError);
    expect((incomplete as IncompleteCallError).failed).toEqual([
      expect.objectContaining({ name: "py-app", code: "APP_E_NOT_A_NUMBER" }),
    ]);
    expect((incomplete as IncompleteCallError).message).toMatch(
      /py-app \(…[0-9a-f]{8}\): APP_E_NOT_A_NUMBER/,
    );
    const r = await cli(["call", "score", '"x"', "--nodes", "py-app", "--hub", fleet.url, "--token", TOKEN]);
    expect(r.code).toBe(7);
    expect(r.stdout + r.stderr).toMatch(
      /py-app \(…[0-9a-f]{8}\)\s+APP_E_NOT_A_NUMBER\s+\d+ ms\s+score needs a number/,
    );
  }, 60_000);

  test("python node - its hub replica killed with SIGKILL mid-call: it moves to the other replica, the call completes and the handler ran once", async () => {
    fleet = await startFleet();
    const db = `sqlite:${join(fleet.dir, "fleet.db")}`;
    const a = await startHubProc(db, TOKEN);
    hubs.push(a);
    const b = await startHubProc(db, TOKEN);
    hubs.push(b);
    const py = await startPyNode({
      hubs: [a.value, b.value],
      enrollToken: enrollTokenFor(TOKEN),
      name: "py-failover",
    });
    nodes.push(py);
    // The coordinator talks to b: only the node's replica dies.
    const run = await (await fleet.fleet([b.value])).createRun();
    const cfg = run.configuration([py.nodeId]);
    const call = cfg.call("sleep", { ms: 1500 }, { quorum: "all", timeoutMs: 20_000 });
    await expect.poll(() => py.calls().length, { timeout: 10_000 }).toBe(1);
    await a.kill("SIGKILL");
    expect((await call).replies.get(py.nodeId)).toEqual({ slept: 1500 });
    expect(
      (await cfg.call("echo", "after", { quorum: "all", timeoutMs: 10_000 })).replies.get(py.nodeId),
    ).toBe("after");
    expect(py.calls().map((l) => l.split(" ")[2])).toEqual(["sleep", "echo"]);
    // One session on a, then one on b.
    const sessions = [...py.output().matchAll(/online as \S+ on (\S+) \(session/g)].map((m) => m[1]);
    expect(sessions).toEqual([a.value, b.value]);
  }, 60_000);
});
