// A writer killed mid-put leaves its temp file (`.NAME.RANDOM.fleetlink-partial`) on file://: list never
// shows it, so garbage collection removes it by age instead, and never one a live put is still writing.
import { spawn } from "node:child_process";
import {
  type Dirent,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, describe, expect, test } from "vitest";
import { FileStore } from "../../src/checkpoint/file-store.ts";
import { collectGarbage, hostKey } from "../../src/checkpoint/layout.ts";
import { newId } from "../../src/protocol/ids.ts";

const dir = mkdtempSync(join(tmpdir(), "fleetlink-gc-partials-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
/** GC_GRACE_MS in layout.ts: how long a temp file nothing writes to may still belong to a live put. */
const GRACE_MS = 10 * 60_000;
const FILE_STORE = join(import.meta.dirname, "../../src/checkpoint/file-store.ts");

/** Every file below root, relative, including partials. */
const allFiles = (root: string): string[] =>
  existsSync(root)
    ? (readdirSync(root, { recursive: true, withFileTypes: true }) as Dirent[])
        .filter((e) => e.isFile())
        .map((e) => join(e.parentPath, e.name).slice(root.length + 1))
        .sort()
    : [];

/** A process that starts a put of `key`, writes some bytes, and is killed with SIGKILL before it ends. */
const killedMidPut = async (root: string, key: string): Promise<void> => {
  const child = spawn(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `import { PassThrough } from "node:stream";
       import { FileStore } from ${JSON.stringify(FILE_STORE)};
       const body = new PassThrough();
       void FileStore.open(${JSON.stringify(`file://${root}`)}).put(${JSON.stringify(key)}, body);
       body.write(Buffer.alloc(64 * 1024, 7), () => setTimeout(() => console.log("writing"), 100));
       setInterval(() => {}, 1000);`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await new Promise<void>((res, rej) => {
    child.stdout.once("data", () => res());
    child.once("exit", (c) => rej(new Error(`writer exited ${c} early`)));
  });
  await new Promise<void>((res) => {
    child.removeAllListeners("exit");
    child.once("exit", () => res());
    child.kill("SIGKILL");
  });
};

describe("garbage collection of partial files (file://)", () => {
  test("gc - a put killed midway leaves a partial file that list skips and GC removes once stale", async () => {
    const root = join(dir, "a");
    const objects = FileStore.open(`file://${root}`);
    const run = newId();
    const done = newId();
    const killed = newId();
    await objects.put(hostKey(run, done, 0), new Uint8Array([1]));
    await objects.put(`${run}/${done}/MANIFEST.json`, new TextEncoder().encode("{}"));
    await killedMidPut(root, hostKey(run, killed, 1));
    const partial = allFiles(root).find((f) => f.endsWith(".fleetlink-partial"));
    expect(partial).toMatch(new RegExp(`^${run}/${killed}/host1/\\.state\\.[0-9a-f]+\\.fleetlink-partial$`));
    expect((await objects.list(`${run}/`)).map((o) => o.key)).not.toContain(partial);

    // Fresh: a put could still be writing it. Kept.
    await collectGarbage(objects, run, 3);
    expect(allFiles(root)).toContain(partial);
    // Untouched for longer than the grace period: removed, and its empty directories with it.
    const old = new Date(Date.now() - GRACE_MS - 60_000);
    utimesSync(join(root, partial!), old, old);
    await collectGarbage(objects, run, 3);
    expect(allFiles(root)).toEqual([`${run}/${done}/MANIFEST.json`, `${run}/${done}/host0/state`]);
    expect(existsSync(join(root, run, killed))).toBe(false);
  }, 20_000);

  test("gc - a live put's partial file is never removed, and the put completes", async () => {
    const root = join(dir, "b");
    const objects = FileStore.open(`file://${root}`);
    const run = newId();
    const id = newId();
    const body = new PassThrough();
    const put = objects.put(hostKey(run, id, 0), body);
    body.write(Buffer.alloc(1024, 1));
    for (let i = 0; i < 50 && !allFiles(root).some((f) => f.endsWith(".fleetlink-partial")); i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(allFiles(root).some((f) => f.endsWith(".fleetlink-partial"))).toBe(true);
    await collectGarbage(objects, run, 3, { graceMs: 60_000 });
    body.end(Buffer.alloc(1024, 2));
    expect((await put).size).toBe(2048);
    expect(allFiles(root)).toEqual([`${run}/${id}/host0/state`]);
  });

  test("removeStalePartials - only under its prefix, and never through a symbolic link", async () => {
    const root = join(dir, "c");
    const objects = FileStore.open(`file://${root}`);
    const [r1, r2, id] = [newId(), newId(), newId()];
    await killedMidPut(root, hostKey(r1, id, 0));
    await killedMidPut(root, hostKey(r2, id, 0));
    const future = Date.now() + 60_000;
    expect(await objects.removeStalePartials(`${r1}/`, future)).toBe(1);
    expect(allFiles(root).filter((f) => f.startsWith(`${r2}/`))).toHaveLength(1);
    expect(await objects.removeStalePartials(`${r2}/`, future)).toBe(1);
    expect(allFiles(root)).toEqual([]);
    // A link to a directory outside the root with a partial in it: neither entered nor removed.
    const outside = join(dir, "c-outside");
    mkdirSync(join(outside, "x"), { recursive: true });
    writeFileSync(join(outside, "x", ".state.0.fleetlink-partial"), "keep");
    symlinkSync(outside, join(root, "linked"));
    expect(await objects.removeStalePartials("", future)).toBe(0);
    expect(await objects.removeStalePartials("linked/", future)).toBe(0);
    expect(existsSync(join(outside, "x", ".state.0.fleetlink-partial"))).toBe(true);
  }, 20_000);
});
