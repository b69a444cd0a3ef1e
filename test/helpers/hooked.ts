import { type SpawnSyncReturns, spawnSync } from "node:child_process";

/**
 * Runs `node --import <hook> …args` in a fresh process and waits for it: the hook (module source) sees every
 * module the process resolves or loads, so a test can hide a package or list what got loaded.
 */
export const runHooked = (
  hook: string,
  args: string[],
  o: { timeoutMs?: number; extraFd?: boolean } = {},
): SpawnSyncReturns<string> =>
  spawnSync(process.execPath, ["--import", `data:text/javascript,${encodeURIComponent(hook)}`, ...args], {
    encoding: "utf8",
    timeout: o.timeoutMs ?? 60_000,
    ...(o.extraFd ? { stdio: ["ignore", "pipe", "pipe", "pipe"] } : {}),
  });

/** `runHooked` for an inline ES module script. */
export const runHookedScript = (hook: string, script: string, timeoutMs?: number): SpawnSyncReturns<string> =>
  runHooked(hook, ["--input-type=module", "-e", script], { timeoutMs });
