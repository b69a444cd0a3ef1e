// A checkpoint host killed (SIGKILL) in the middle of writing its part leaves a `.fleetlink-partial` file in a
// file:// store; the run's next good push removes it, as it removes the finished parts of that failed push.
import { type Dirent, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, expect, test } from "vitest";
import { type CheckpointFleet, startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";
import { ENROLL_TOKEN } from "../helpers/fleet.ts";
import { FIXTURE_HANDLERS, type Proc, startCli } from "../helpers/procs.ts";

const dir = mkdtempSync(join(tmpdir(), "fleetlink-killed-host-"));
const procs: Proc[] = [];
let f: CheckpointFleet | undefined;
afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
  await f?.close();
  rmSync(dir, { recursive: true, force: true });
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A node's state: with STALL_MARKER set, a snapshot that sends 256 KiB, says so in that file, and never ends. */
const STATE = `
import { writeFileSync } from "node:fs";
import { Readable } from "node:stream";
export const snapshot = () => {
  const marker = process.env.STALL_MARKER;
  if (!marker) return Buffer.alloc(128 * 1024, 9);
  let sent = false;
  return new Readable({
    read() {
      if (sent) return;
      sent = true;
      this.push(Buffer.alloc(256 * 1024, 7));
      setTimeout(() => writeFileSync(marker, "writing"), 300);
    },
  });
};
export const restore = async (stream) => {
  for await (const _ of stream);
};
`;

/** Every partial file below root, relative. */
const partials = (root: string): string[] =>
  existsSync(root)
    ? (readdirSync(root, { recursive: true, withFileTypes: true }) as Dirent[])
        .filter((e) => e.isFile() && e.name.endsWith(".fleetlink-partial"))
        .map((e) => join(e.parentPath, e.name).slice(root.length + 1))
    : [];

test("killed host - a host SIGKILLed mid-push leaves a partial file; the run's next good push removes it", async () => {
  f = await startCheckpointFleet();
  const root = fileURLToPath(f.objectsUrl);
  const stateModule = join(dir, "state.mjs");
  writeFileSync(stateModule, STATE);
  const marker = join(dir, "marker");
  const host = (env: Record<string, string>) =>
    startCli(
      [
        "node",
        "--hub",
        f!.url,
        "--name",
        "host0",
        "--handlers",
        FIXTURE_HANDLERS,
        "--token",
        ENROLL_TOKEN,
        "--identity",
        join(dir, "host0.json"),
        "--heartbeat",
        "300",
        "--state",
        stateModule,
        "--checkpoint-store",
        f!.objectsUrl,
      ],
      /online as (\S+)/,
      env,
    );
  const stalling = await host({ STALL_MARKER: marker });
  procs.push(stalling);
  const run = await f.fleet.createRun();
  await f.fleet.checkpoints.assign(run, [stalling.value]);

  const killed = f.fleet.checkpoints.push(run, { timeoutMs: 20_000 }).catch((e: Error) => e);
  for (let i = 0; i < 200 && !existsSync(marker); i++) await sleep(25);
  expect(existsSync(marker)).toBe(true);
  await stalling.kill("SIGKILL");
  const left = partials(root);
  expect(left).toHaveLength(1);
  expect(left[0]).toMatch(new RegExp(`^${run.id}/[^/]+/host0/\\.state\\.[0-9a-f]+\\.fleetlink-partial$`));
  const failed = await killed;
  expect(failed instanceof Error ? "error" : failed.status).toBe("error");

  // The same host comes back (same identity) and the next push of the run succeeds.
  const again = await host({});
  procs.push(again);
  expect(again.value).toBe(stalling.value);
  // A restarted agent learns its roles anew.
  await f.fleet.checkpoints.assign(run, [again.value]);
  const t0 = performance.now();
  const ok = await f.fleet.checkpoints.push(run, { timeoutMs: 20_000 });
  expect(ok.status, JSON.stringify(ok)).toBe("ok");
  const remaining = partials(root);
  console.log(
    `killed host: partial ${left[0]} left by the SIGKILL; after the next good push ` +
      `(${(performance.now() - t0).toFixed(0)} ms): ${remaining.length} partial files`,
  );
  expect(remaining).toEqual([]);
  // The good checkpoint is whole, and nothing of the failed one is left.
  expect(readdirSync(join(root, run.id))).toEqual([ok.id]);
}, 60_000);
