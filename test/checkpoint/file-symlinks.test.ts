// The file:// store never follows a symbolic link out of its root: reads, writes, listing and garbage
// collection leave everything outside untouched, even when a directory or an object inside is a link.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { collectGarbage, listCheckpoints } from "../../src/checkpoint/layout.ts";
import type { ObjectStore } from "../../src/checkpoint/object-store.ts";
import { openObjectStore } from "../../src/checkpoint/open.ts";
import { rejectsWith } from "../helpers/expect.ts";

const OLD = "0190e2b4-0000-7000-8000-000000000001"; // UUIDv7 from 2024: long past any grace period
const NEWER = "0190e2b4-0000-7000-8000-000000000002";
const bytes = (s: string) => new TextEncoder().encode(s);

describe("file store - symbolic links", () => {
  let base: string;
  let root: string;
  let outside: string;
  let store: ObjectStore;
  /** Every file under `outside`, with its contents. */
  const outsideFiles = () =>
    readdirSync(outside, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map(
        (e) =>
          `${join(e.parentPath, e.name).slice(outside.length + 1)}=${readFileSync(join(e.parentPath, e.name), "utf8")}`,
      )
      .sort();

  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "fleetlink-links-"));
    root = join(base, "store");
    outside = join(base, "outside");
    mkdirSync(root);
    // Outside the store: what looks like a run's old, incomplete checkpoint and a complete one, plus a secret.
    mkdirSync(join(outside, "run", OLD, "host0"), { recursive: true });
    writeFileSync(join(outside, "run", OLD, "host0", "state"), "outside part");
    mkdirSync(join(outside, "run", NEWER), { recursive: true });
    writeFileSync(
      join(outside, "run", NEWER, "MANIFEST.json"),
      JSON.stringify({ id: NEWER, runId: "linked", createdAt: 0, nHosts: 1, hosts: [] }),
    );
    writeFileSync(join(outside, "secret"), "secret");
    // Inside: a run directory that is a link, and a run whose part is a link to a file.
    symlinkSync(join(outside, "run"), join(root, "linked"), "dir");
    mkdirSync(join(root, "real", OLD, "host0"), { recursive: true });
    symlinkSync(join(outside, "secret"), join(root, "real", OLD, "host0", "state"), "file");
    // A link deeper down: the host directory of an otherwise real checkpoint.
    mkdirSync(join(root, "deep", OLD), { recursive: true });
    symlinkSync(join(outside, "run", OLD, "host0"), join(root, "deep", OLD, "host0"), "dir");
    store = openObjectStore(`file://${root}`);
  });
  afterEach(async () => {
    await store.close();
    rmSync(base, { recursive: true, force: true });
  });

  const untouched = () =>
    [
      "run/0190e2b4-0000-7000-8000-000000000001/host0/state=outside part",
      `run/${NEWER}/MANIFEST.json=${JSON.stringify({ id: NEWER, runId: "linked", createdAt: 0, nHosts: 1, hosts: [] })}`,
      "secret=secret",
    ].sort();

  test("gc - garbage collection through a linked run directory or a linked part deletes nothing outside", async () => {
    const far = Date.now() + 365 * 24 * 3600_000;
    for (const run of ["linked", "real", "deep"])
      await collectGarbage(store, run, 0, { now: far, graceMs: 0 });
    expect(outsideFiles()).toEqual(untouched());
    // The links themselves are not objects of the store either: still there, still pointing out.
    expect(existsSync(join(root, "linked"))).toBe(true);
  });

  test("list - links are neither listed nor entered; a manifest behind one is never a checkpoint", async () => {
    expect(await store.list("")).toEqual([]);
    expect(await store.list("linked/")).toEqual([]);
    expect(await store.list(`linked/${OLD}/`)).toEqual([]);
    expect(await store.list("real/")).toEqual([]);
    expect(await store.list("deep/")).toEqual([]);
    expect(await listCheckpoints(store, "linked")).toEqual([]);
  });

  test("read - get, getBytes and head through a link are refused with a clear error", async () => {
    for (const key of [`linked/${OLD}/host0/state`, `real/${OLD}/host0/state`, `deep/${OLD}/host0/state`]) {
      const e = await rejectsWith(store.get(key), "INVALID_ARGUMENT", "key");
      expect(e.message).toMatch(/symbolic link/);
      await rejectsWith(store.getBytes(key), "INVALID_ARGUMENT", "key");
      await rejectsWith(store.head(key), "INVALID_ARGUMENT", "key");
    }
    await rejectsWith(store.getBytes(`linked/${NEWER}/MANIFEST.json`), "INVALID_ARGUMENT", "key");
  });

  test("write - put through a linked directory or onto a linked object is refused, nothing changes outside", async () => {
    for (const key of [
      `linked/${OLD}/host0/state`, // overwrite through a linked directory
      "linked/new/host0/state", // create (mkdir) through a linked directory
      `real/${OLD}/host0/state`, // replace a linked object
      `deep/${OLD}/host0/state`,
      `deep/${OLD}/host0/more/state`,
    ]) {
      const e = await rejectsWith(store.put(key, bytes("overwritten")), "INVALID_ARGUMENT", "key");
      expect(e.message).toMatch(/symbolic link/);
    }
    expect(outsideFiles()).toEqual(untouched());
    expect(readdirSync(join(outside, "run")).sort()).toEqual([OLD, NEWER].sort());
    expect(readdirSync(join(outside, "run", OLD, "host0"))).toEqual(["state"]);
  });

  test("delete - keys through a link are refused as a batch, and nothing outside is deleted", async () => {
    await store.put("real/keep/host0/state", bytes("mine"));
    await rejectsWith(
      store.delete(["real/keep/host0/state", `linked/${OLD}/host0/state`]),
      "INVALID_ARGUMENT",
      "key",
    );
    await rejectsWith(store.delete([`real/${OLD}/host0/state`]), "INVALID_ARGUMENT", "key");
    await rejectsWith(store.delete([`deep/${OLD}/host0/state`]), "INVALID_ARGUMENT", "key");
    expect(outsideFiles()).toEqual(untouched());
    expect(new TextDecoder().decode(await store.getBytes("real/keep/host0/state"))).toBe("mine");
  });

  test("root - a store whose root itself is a link works as usual (the operator chose it)", async () => {
    const alias = join(base, "alias");
    symlinkSync(root, alias, "dir");
    const viaAlias = openObjectStore(`file://${alias}`);
    await viaAlias.put("run/x/host0/state", bytes("ok"));
    expect(await viaAlias.list("run/")).toEqual([{ key: "run/x/host0/state", size: 2 }]);
    expect(new TextDecoder().decode(await viaAlias.getBytes("run/x/host0/state"))).toBe("ok");
    await viaAlias.delete(["run/x/host0/state"]);
    expect(await viaAlias.head("run/x/host0/state")).toBeNull();
  });
});
