// `fleetlink node` and its identity file: another --name is a usage error; a second process on the same
// identity makes one of the two exit 6 (conflict) after a few replacements, not replace each other forever.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet } from "../helpers/fleet.ts";
import { CLI, cli } from "./cli-run.ts";

let f: TestFleet;
let dir: string;
const children: ChildProcess[] = [];
beforeAll(async () => {
  f = await startFleet();
  dir = mkdtempSync(join(tmpdir(), "fleetlink-node-identity-"));
  writeFileSync(join(dir, "handlers.mjs"), "export const echo = (p) => p;\n");
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  await f?.close();
  rmSync(dir, { recursive: true, force: true });
});

const nodeArgs = (name: string, identity: string) => [
  "node",
  "--hub",
  f.url,
  "--name",
  name,
  "--handlers",
  join(dir, "handlers.mjs"),
  "--token",
  ENROLL_TOKEN,
  "--identity",
  identity,
  "--heartbeat",
  "500",
  "--log-level",
  "warn",
];

/** A `fleetlink node` process, and a promise of its exit code and stderr. */
const startNode = (args: string[]) => {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => {
    out += d;
  });
  child.stderr!.on("data", (d) => {
    err += d;
  });
  const online = new Promise<void>((resolve, reject) => {
    const t = setInterval(() => {
      if (/online as /.test(out)) {
        clearInterval(t);
        resolve();
      } else if (child.exitCode !== null) {
        clearInterval(t);
        reject(new Error(`exited ${child.exitCode}: ${err}`));
      }
    }, 50);
  });
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.on("exit", (code) => resolve({ code, stderr: err })),
  );
  return { child, online, exited };
};

describe("fleetlink node identity", () => {
  test("node - an --identity file of another node name exits 64 naming both names and the fix, before connecting", async () => {
    const identity = join(dir, "alpha.json");
    const a = startNode(nodeArgs("alpha", identity));
    await a.online;
    a.child.kill("SIGTERM");
    expect((await a.exited).code).toBe(0);
    const r = await cli(nodeArgs("beta", identity));
    expect(r.code, r.stderr).toBe(ExitCode.usage);
    expect(r.stderr).toMatch(
      /FLEETLINK_E_INVALID_ARGUMENT: name: the identity file .*alpha\.json is node "alpha"/,
    );
    expect(r.stderr).toMatch(/not "beta"\. Start it as --name alpha/);
    expect(r.stderr).toContain("fleetlink nodes unregister");
  }, 30_000);

  test("node - two processes on one identity: one exits 6 (CONFLICT) after 3 replacements in a row, the other stays online", async () => {
    const identity = join(dir, "twin.json");
    const one = startNode(nodeArgs("twin", identity));
    await one.online;
    const two = startNode(nodeArgs("twin", identity));
    await two.online;
    const first = await Promise.race([one.exited, two.exited]);
    expect(first.code, first.stderr).toBe(ExitCode.conflict);
    expect(first.stderr).toMatch(
      /FLEETLINK_E_CONFLICT: another process is connected as node .*replaced 3 times in a row/,
    );
    // The other one is still running, and online: the hub lists the node online.
    const survivor = one.child.exitCode === null ? one.child : two.child;
    expect(survivor.exitCode).toBeNull();
    const fleet = await f.fleet();
    await expect
      .poll(async () => (await fleet.nodes()).filter((n) => n.name === "twin").length, { timeout: 10_000 })
      .toBe(1);
  }, 60_000);
});
