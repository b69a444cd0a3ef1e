import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";

/**
 * A mark for the processes a test starts (an environment variable they inherit, children of children
 * included), so that the test can find the ones still running by pid, whoever their parent is by then.
 */
export const processMark = () => {
  const value = randomUUID();
  const entry = `FLEETLINK_TEST_MARK=${value}`;
  const alive = (): number[] =>
    readdirSync("/proc")
      .filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid)
      .filter((pid) => {
        try {
          // A zombie (exited, not yet reaped) has an empty environ: it runs no more.
          return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").includes(entry);
        } catch {
          return false;
        }
      })
      .map(Number);
  return {
    env: { FLEETLINK_TEST_MARK: value },
    /**
     * Calls `start` with the mark in this process's environment, for what it spawns before its first await
     * (as runTest spawns its nodes), and removes it again so that nothing else is marked.
     */
    around<T>(start: () => T): T {
      process.env.FLEETLINK_TEST_MARK = value;
      try {
        return start();
      } finally {
        delete process.env.FLEETLINK_TEST_MARK;
      }
    },
    alive,
    /** The marked processes still running after up to `ms` (an exit takes a moment to be seen). */
    async remaining(ms = 500): Promise<number[]> {
      const end = Date.now() + ms;
      let left = alive();
      while (left.length > 0 && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 50));
        left = alive();
      }
      return left;
    },
    /** Ends whatever is left: a failing test must not leave processes behind either. */
    killAll(): void {
      for (const pid of alive())
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
    },
  };
};
