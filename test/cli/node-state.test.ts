// `fleetlink node --state MODULE --checkpoint-store URL`: real node processes whose state a coordinator
// checkpoints and restores through a real hub process; modules that fail to load say which and why.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, test } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.ts";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { enrollTokenFor, type Proc, startCli, startHubProc } from "../helpers/procs.ts";

const run = promisify(execFile);
const CLI = join(import.meta.dirname, "../../src/cli/main.ts");
const TOKEN = "cli-state-token";
const dir = mkdtempSync(join(tmpdir(), "fleetlink-cli-state-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** State kept in a file: snapshot() returns it as a stream or a string (STATE_AS), restore() rewrites it. */
const STATE_MODULE = `
import { createReadStream, readFileSync, writeFileSync } from "node:fs";
const file = process.env.STATE_FILE;
export const snapshot = () =>
  process.env.STATE_AS === "string" ? readFileSync(file, "utf8") : createReadStream(file);
export async function restore(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  writeFileSync(file, Buffer.concat(chunks));
}
`;
const write = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
/** Runs `fleetlink ARGS` to its end; resolves with its exit code and output. */
const cli = (args: string[], env: Record<string, string> = {}) =>
  run(process.execPath, [CLI, ...args], {
    timeout: 20_000,
    env: { ...process.env, FLEETLINK_CHECKPOINT_STORE: "", ...env },
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }),
  );

describe("fleetlink node --state", () => {
  test("cli - two node processes with --state push a fleet checkpoint and restore it", async () => {
    const store = `file://${join(dir, "objects")}`;
    const stateModule = write("state.mjs", STATE_MODULE);
    const files = [join(dir, "state-0.bin"), join(dir, "state-1.txt")];
    writeFileSync(files[0]!, Buffer.from([0, 1, 2, 255, 254, 10, 13]));
    writeFileSync(files[1]!, "host one's state: ünïcode\n");
    const saved = files.map((f) => readFileSync(f));
    const procs: Proc[] = [];
    let fleet: Fleet | undefined;
    try {
      const hub = await startHubProc(`sqlite:${join(dir, "hub.db")}`, TOKEN, ["--checkpoint-store", store]);
      procs.push(hub);
      const nodes = await Promise.all(
        files.map((f, k) =>
          startCli(
            [
              "node",
              "--hub",
              hub.value,
              "--name",
              `state-${k}`,
              "--state",
              stateModule,
              "--checkpoint-store",
              store,
              "--token",
              enrollTokenFor(TOKEN),
              "--identity",
              join(dir, `id-${k}.json`),
              "--heartbeat",
              "500",
            ],
            /online as (\S+)/,
            { STATE_FILE: f, STATE_AS: k === 0 ? "stream" : "string" },
          ),
        ),
      );
      procs.push(...nodes);
      fleet = await Fleet.connect({ hub: hub.value, token: TOKEN });
      const r = await fleet.createRun();
      await fleet.checkpoints.assign(
        r,
        nodes.map((p) => p.value),
      );
      const pushed = await fleet.checkpoints.push(r, { timeoutMs: 20_000 });
      expect(pushed).toMatchObject({ status: "ok", hosts: [{ status: "ok" }, { status: "ok" }] });
      expect((await fleet.checkpoints.list(r)).map((c) => c.bytes)).toEqual([
        saved[0]!.length + saved[1]!.length,
      ]);

      for (const f of files) writeFileSync(f, "overwritten after the checkpoint");
      const pulled = await fleet.checkpoints.pull(r, pushed.id, { timeoutMs: 20_000 });
      expect(pulled).toMatchObject({ status: "ok", id: pushed.id });
      for (const [k, f] of files.entries()) expect(Buffer.compare(readFileSync(f), saved[k]!)).toBe(0);
    } finally {
      await fleet?.close();
      for (const p of procs.reverse()) await p.kill();
    }
  }, 60_000);

  test("cli - a host node process killed and restarted on its --identity file pulls its state back, no re-assign", async () => {
    const store = `file://${join(dir, "objects-r")}`;
    const stateModule = write("state-r.mjs", STATE_MODULE);
    const files = [0, 1].map((k) => join(dir, `restart-${k}.bin`));
    for (const [k, f] of files.entries()) writeFileSync(f, `worker ${k}'s state before the restart\n`);
    const saved = files.map((f) => readFileSync(f));
    const procs: Proc[] = [];
    try {
      const hub = await startHubProc(`sqlite:${join(dir, "hub-r.db")}`, TOKEN, ["--checkpoint-store", store]);
      procs.push(hub);
      const startNode = (k: number) =>
        startCli(
          [
            "node",
            "--hub",
            hub.value,
            "--name",
            `worker-${k}`,
            "--state",
            stateModule,
            "--checkpoint-store",
            store,
            "--token",
            enrollTokenFor(TOKEN),
            "--identity",
            join(dir, `id-r-${k}.json`),
            "--heartbeat",
            "500",
          ],
          /online as (\S+)/,
          { STATE_FILE: files[k]! },
        );
      const nodes = await Promise.all([0, 1].map(startNode));
      procs.push(...nodes);
      const admin = ["--hub", hub.value, "--token", TOKEN];
      const runId = (await cli(["runs", "create", ...admin])).stdout.trim();
      const assigned = await cli([
        "checkpoint",
        "assign",
        "--run",
        runId,
        "--hosts",
        "worker-0,worker-1",
        ...admin,
      ]);
      expect(assigned.code, assigned.stderr).toBe(0);
      const pushed = await cli(["checkpoint", "push", "--run", runId, ...admin]);
      expect(pushed.code, pushed.stderr).toBe(0);

      await nodes[1]!.kill("SIGKILL");
      writeFileSync(files[1]!, "lost in the crash");
      const again = await startNode(1);
      procs.push(again);
      expect(again.value).toBe(nodes[1]!.value);
      const pulled = await cli(["checkpoint", "pull", "--run", runId, "--id", "latest", ...admin]);
      expect(pulled.code, pulled.stderr).toBe(0);
      expect(JSON.parse(pulled.stdout)).toMatchObject({
        status: "ok",
        hosts: [{ status: "ok" }, { status: "ok" }],
      });
      for (const [k, f] of files.entries()) expect(Buffer.compare(readFileSync(f), saved[k]!)).toBe(0);
    } finally {
      for (const p of procs.reverse()) await p.kill();
    }
  }, 60_000);

  test("cli - a state or handlers module that fails to load names the module and the error", async () => {
    const common = ["node", "--hub", "http://127.0.0.1:9", "--name", "broken", "--token", "x"];
    const store = ["--checkpoint-store", `file://${join(dir, "objects-b")}`];
    const throws = write(
      "throws.mjs",
      `export const snapshot = () => "";\nthrow new Error("boom while loading");\n`,
    );
    const r1 = await cli([...common, "--state", throws, ...store]);
    expect(r1.code).toBe(ExitCode.usage);
    expect(r1.stderr).toContain(`--state ${throws}: cannot load ${throws}: Error: boom while loading`);
    expect(r1.stderr).toContain(`throws.mjs:2`);

    const syntax = write("syntax.mjs", "export const add = (a, b) => {\n  return a +;\n};\n");
    const r2 = await cli([...common, "--handlers", syntax]);
    expect(r2.code).toBe(ExitCode.usage);
    expect(r2.stderr).toMatch(new RegExp(`--handlers ${syntax}: cannot load ${syntax}: SyntaxError: `));

    const missing = join(dir, "nope.mjs");
    const r3 = await cli([...common, "--state", missing, ...store]);
    expect(r3.code).toBe(ExitCode.usage);
    expect(r3.stderr).toContain(`--state ${missing}: cannot load ${missing}: Error: Cannot find module`);

    const half = write("half.mjs", "export const snapshot = () => 'x';\nexport const version = 2;\n");
    const r4 = await cli([...common, "--state", half, ...store]);
    expect(r4.code).toBe(ExitCode.usage);
    expect(r4.stderr).toContain(
      `--state ${half}: must export snapshot() and restore(stream) functions (named or on the default export); it exports snapshot, version`,
    );

    const ok = write("ok-state.mjs", STATE_MODULE);
    const r5 = await cli([...common, "--state", ok]);
    expect(r5.code).toBe(ExitCode.usage);
    expect(r5.stderr).toContain("--state needs --checkpoint-store");
    const r6 = await cli(common);
    expect(r6.stderr).toContain("give --handlers, --state or both");
  }, 60_000);
});
