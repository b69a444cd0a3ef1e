// The harness owns the node processes it starts: after a run, one whose init fails, one that throws, and an
// interrupted `fleetlink maelstrom test`, no process it started is left running, even when --bin is a shell
// command that runs the node as its child, or a node that ignores SIGTERM.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, test } from "vitest";
import { runTest, type TestParams } from "../../src/maelstrom/harness/run.ts";
import { processMark } from "./marked.ts";

const root = join(import.meta.dirname, "../..");
const node = `"${process.execPath}"`;
const main = `"${join(root, "src/maelstrom/main.ts")}"`;
// `; exit 0` keeps the shell as the node's parent (a lone command would be exec'd in place of the shell).
const wrapped = (w: string) => `${node} ${main} ${w}; exit 0`;
const stubborn = `${node} "${join(import.meta.dirname, "fixtures/stubborn.ts")}"; exit 0`;
// Never answers init, ignores SIGTERM: only SIGKILL ends it.
const deaf = `${node} -e "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"; exit 0`;
const dir = mkdtempSync(join(tmpdir(), "fleetlink-maelstrom-procs-"));
const marks: ReturnType<typeof processMark>[] = [];
afterEach(() => {
  for (const m of marks.splice(0)) m.killAll();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
// broadcast: its replication timers keep a node running after its stdin closes, as many nodes do.
const params = (p: Partial<TestParams>): TestParams => ({
  workload: "broadcast",
  bin: wrapped("broadcast"),
  nodeCount: 3,
  timeLimitS: 1,
  rate: 10,
  latencyMs: 0,
  nemesis: "none",
  nemesisIntervalS: 1,
  topology: "grid",
  seed: 7,
  // Values acknowledged in the last batch interval need a moment to reach every node before the final reads.
  recoveryS: 2,
  clientTimeoutMs: 2000,
  out: join(dir, `run-${n++}`),
  ...p,
});
const mark = () => {
  const m = processMark();
  marks.push(m);
  return m;
};

describe("maelstrom harness processes", () => {
  test("processes - a valid run ends every node process, the shells' children included", async () => {
    const m = mark();
    let during: number[] = [];
    const r = await m.around(() =>
      runTest(params({}), (line) => {
        if (line.startsWith("clients")) during = m.alive();
      }),
    );
    expect(r.problems).toEqual([]);
    // Each node is a shell and its node child.
    expect(during.length).toBe(6);
    expect(await m.remaining()).toEqual([]);
  }, 30_000);

  test("processes - a node that ignores SIGTERM and outlives its stdin is killed with its group", async () => {
    const m = mark();
    const r = await m.around(() => runTest(params({ workload: "echo", bin: stubborn })));
    expect(r.problems).toEqual([]);
    expect(await m.remaining()).toEqual([]);
  }, 30_000);

  test("init - a node that never answers init: invalid within --init-timeout, no client ran, said so; and killed", async () => {
    const m = mark();
    const log: string[] = [];
    const t0 = Date.now();
    const r = await m.around(() =>
      runTest(params({ bin: deaf, nodeCount: 2, initTimeoutS: 1, timeLimitS: 20 }), (l) => log.push(l)),
    );
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.valid).toBe(false);
    expect(r.ran).toMatchObject({ initOk: 0, clients: false, finalReads: false });
    expect(r.ops.total).toBe(0);
    expect(r.problems[0]).toMatch(/no client ran/);
    expect(r.errors.filter((e) => e.kind === "init-timeout").map((e) => e.node)).toEqual(["n0", "n1"]);
    expect(r.errors[0]!.detail).toMatch(/within 1 s .*--init-timeout/);
    expect(log.join("\n")).toMatch(/init: 0 of 2 nodes answered within 1 s; no client runs/);
    expect(log.join("\n")).not.toMatch(/^clients:/m);
    expect(await m.remaining()).toEqual([]);
  }, 30_000);

  test("errors - a run that throws half-way still ends every node process", async () => {
    const m = mark();
    const run = m.around(() =>
      runTest(params({ workload: "echo", bin: stubborn }), (line) => {
        if (line.startsWith("init")) throw new Error("boom");
      }),
    );
    await expect(run).rejects.toThrow("boom");
    expect(await m.remaining()).toEqual([]);
  }, 30_000);

  test.each(["SIGTERM", "SIGINT"] as const)(
    "cli - an interrupted `fleetlink maelstrom test` (%s) ends its nodes",
    async (sig) => {
      const m = mark();
      const cli = spawn(
        process.execPath,
        [
          join(root, "src/cli/main.ts"),
          "maelstrom",
          "test",
          "-w",
          "broadcast",
          "--bin",
          wrapped("broadcast"),
          "--node-count",
          "3",
          "--time-limit",
          "30",
          "--out",
          join(dir, `cli-${sig}`),
        ],
        { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...m.env } },
      );
      const exited = new Promise<number | null>((res) => cli.once("exit", (code) => res(code)));
      try {
        await new Promise<void>((res, rej) => {
          let err = "";
          const t = setTimeout(() => rej(new Error(`no clients line in 20 s: ${err}`)), 20_000);
          cli.stderr!.on("data", (d) => {
            err += d;
            if (/clients:/.test(err)) {
              clearTimeout(t);
              res();
            }
          });
        });
        expect(m.alive().length).toBe(7);
        cli.kill(sig);
        expect(await exited).toBe(130);
        expect(await m.remaining(1000)).toEqual([]);
      } finally {
        cli.kill("SIGKILL");
      }
    },
    40_000,
  );
});
