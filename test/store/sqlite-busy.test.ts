import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { SqliteStore } from "../../src/store/sqlite.ts";
import { rejectsWith } from "../helpers/expect.ts";

/** Takes the database's write lock in another process, holds it HOLD_MS, then lets it go. */
const HOLDER = `
const { DatabaseSync } = require("node:sqlite");
const db = new DatabaseSync(process.env.DB);
db.exec("PRAGMA busy_timeout = 5000");
db.exec("BEGIN IMMEDIATE");
db.exec("INSERT INTO records (key, version, value, updated_at) VALUES ('holder', 1, '1', 0)");
process.stdout.write("locked\\n");
setTimeout(() => {
  db.exec("COMMIT");
  db.close();
  process.stdout.write("released\\n");
}, Number(process.env.HOLD_MS));
`;

let dir: string;
let children: ChildProcess[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "fleetlink-busy-"));
  children = [];
});
afterEach(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts the lock holder and resolves once it holds the lock; `released` resolves when it let go. */
const holdLock = async (path: string, holdMs: number) => {
  const child = spawn(process.execPath, ["--no-warnings", "-e", HOLDER], {
    env: { ...process.env, DB: path, HOLD_MS: String(holdMs) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  child.on("error", () => {});
  let out = "";
  const seen = (word: string) =>
    new Promise<number>((resolve, reject) => {
      const check = () => {
        if (out.includes(word)) resolve(performance.now());
      };
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        check();
      });
      child.once("exit", (code) => {
        check();
        reject(new Error(`lock holder exited ${code} before saying ${word}`));
      });
    });
  const released = seen("released");
  released.catch(() => {});
  await seen("locked");
  return { released };
};

/** Largest gap between ticks of a 10 ms interval while `p` runs: how long the event loop was frozen. */
const maxGapWhile = async <T>(
  p: () => Promise<T>,
): Promise<{ gap: number; result: PromiseSettledResult<T> }> => {
  let last = performance.now();
  let gap = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    gap = Math.max(gap, now - last);
    last = now;
  }, 10);
  const [result] = await Promise.allSettled([p()]);
  clearInterval(timer);
  gap = Math.max(gap, performance.now() - last);
  return { gap, result: result! };
};

test("sqlite busy - a write waits out another process's write lock without freezing the event loop", async () => {
  const path = join(dir, "fleet.db");
  const store = new SqliteStore(path);
  const node = await store.registerNode({ name: "n", heartbeatIntervalMs: 60_000 });
  try {
    const { released } = await holdLock(path, 1500);
    const started = performance.now();
    const { gap, result } = await maxGapWhile(() =>
      Promise.all([store.createRun(), store.claimInstructions({ nodeIds: [node.id], limit: 1 })]),
    );
    const done = performance.now();
    expect(result.status).toBe("fulfilled");
    expect(gap).toBeLessThan(100);
    // It waited for the lock, and went ahead soon after the lock went.
    expect(done - started).toBeGreaterThan(1000);
    expect(done - (await released)).toBeLessThan(500);
    expect((await store.getRecord("holder"))?.value).toBe(1);
  } finally {
    await store.close();
  }
});

test("sqlite busy - a lock held longer than busyTimeoutMs fails the write with STORE_UNAVAILABLE", async () => {
  const path = join(dir, "fleet.db");
  const store = new SqliteStore(path, { busyTimeoutMs: 300 });
  try {
    await holdLock(path, 1500);
    const started = performance.now();
    const { gap, result } = await maxGapWhile(() => store.putRecord("k", 1, null));
    expect(gap).toBeLessThan(100);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(result.status).toBe("rejected");
    const err = await rejectsWith(
      Promise.reject((result as PromiseRejectedResult).reason),
      "STORE_UNAVAILABLE",
    );
    expect(err.message).toMatch(/database is locked for \d+ ms/);
    // Nothing was written, and the store works again once the lock is gone.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await store.putRecord("k", 2, null)).value).toBe(2);
  } finally {
    await store.close();
  }
});
