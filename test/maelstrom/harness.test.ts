// The harness against our nodes (valid, also under partitions) and against deliberately broken ones
// (declared invalid): the harness must be able to fail.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { runTest, type TestParams } from "../../src/maelstrom/harness/run.ts";
import { processMark } from "./marked.ts";

const root = join(import.meta.dirname, "../..");
const node = `"${process.execPath}"`;
const ours = (w: string) => `${node} "${join(root, "src/maelstrom/main.ts")}" ${w}`;
const fixture = (f: string) => `${node} "${join(root, "test/fixtures/maelstrom", f)}"`;
const dir = mkdtempSync(join(tmpdir(), "fleetlink-maelstrom-"));
// Every run ends its nodes itself; a run cut short by a test's timeout is still running, so what is left of
// them is killed here.
const mark = processMark();
afterAll(() => {
  mark.killAll();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
const run = (p: Partial<TestParams>) =>
  mark.around(() =>
    runTest({
      workload: "broadcast",
      bin: ours("broadcast"),
      nodeCount: 5,
      timeLimitS: 4,
      rate: 20,
      latencyMs: 10,
      nemesis: "none",
      nemesisIntervalS: 1,
      topology: "grid",
      seed: 42,
      recoveryS: 3,
      clientTimeoutMs: 5000,
      out: join(dir, `run-${n++}`),
      ...p,
    }),
  );

describe("maelstrom harness", () => {
  test("3a - one node: valid, nothing lost", async () => {
    const r = await run({ nodeCount: 1, rate: 10, latencyMs: 0, recoveryS: 1 });
    expect(r.valid).toBe(true);
    expect(r.ops.ok).toBeGreaterThan(20);
    expect(r.serverMsgs).toBe(0);
  }, 30_000);

  test("3b - five nodes: valid, every value everywhere, a report with an SVG latency plot", async () => {
    const r = await run({});
    expect(r.problems).toEqual([]);
    expect(r.valid).toBe(true);
    expect(r.lost).toEqual([]);
    const html = readFileSync(join(r.params.out, "report.html"), "utf8");
    expect(html).toContain("<svg");
    expect(JSON.parse(readFileSync(join(r.params.out, "results.json"), "utf8")).valid).toBe(true);
  }, 30_000);

  test("3c - five nodes under partitions (line topology, 50 ms latency): still valid", async () => {
    const r = await run({
      nemesis: "partition",
      topology: "line",
      latencyMs: 50,
      rate: 30,
      timeLimitS: 8,
      recoveryS: 6,
    });
    expect(r.nemesis.filter((e) => e.action === "start").length).toBeGreaterThanOrEqual(2);
    expect(r.droppedMsgs).toBeGreaterThan(0);
    expect(r.problems).toEqual([]);
    expect(r.valid).toBe(true);
  }, 40_000);

  test("broken - a node that never acknowledges values it has seen loses values under partitions", async () => {
    const r = await run({
      bin: fixture("no-dup-ack.ts"),
      nemesis: "partition",
      topology: "line",
      latencyMs: 50,
      rate: 30,
      timeLimitS: 8,
    });
    expect(r.valid).toBe(false);
    expect(r.lost!.length).toBeGreaterThan(0);
  }, 40_000);

  test("broken - a node that never retries loses values under partitions", async () => {
    const r = await run({
      bin: fixture("no-retry.ts"),
      nemesis: "partition",
      topology: "line",
      latencyMs: 50,
      rate: 30,
      timeLimitS: 8,
    });
    expect(r.valid).toBe(false);
    expect(r.problems.join()).toMatch(/missing from final reads/);
  }, 40_000);

  test("broken - garbage on stdout and a crashing node are reported, and the run is invalid", async () => {
    const g = await run({ workload: "echo", bin: fixture("garbage.ts"), nodeCount: 2, timeLimitS: 2 });
    expect(g.valid).toBe(false);
    expect(g.errors.some((e) => e.kind === "malformed-output" && /oops/.test(e.detail))).toBe(true);
    const c = await run({
      workload: "echo",
      bin: `NODE_CRASH_AFTER=2 ${fixture("garbage.ts")}`,
      nodeCount: 2,
      timeLimitS: 2,
    });
    expect(c.valid).toBe(false);
    expect(c.errors.some((e) => e.kind === "crash")).toBe(true);
  }, 30_000);

  test("workloads - echo, unique-ids and g-set (under partitions) are valid", async () => {
    for (const w of ["echo", "unique-ids"] as const) {
      const r = await run({ workload: w, bin: ours(w), nodeCount: 3, timeLimitS: 2 });
      expect(r.problems).toEqual([]);
    }
    const g = await run({
      workload: "g-set",
      bin: ours("g-set"),
      nemesis: "partition",
      timeLimitS: 5,
      recoveryS: 6,
    });
    expect(g.problems).toEqual([]);
    expect(g.valid).toBe(true);
  }, 60_000);
});
