// Runs `fleetlink …` as a real OS process with a clean environment: no FLEETLINK_* variable of the caller and
// a HOME of its own, so neither the developer's shell nor ~/.config/fleetlink leaks into a test.
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExitCode, exitCodeByKind } from "../../src/cli/exit-codes.ts";
import type { ErrorName } from "../../src/protocol/errors.ts";

export const CLI = join(import.meta.dirname, "../../src/cli/main.ts");
const HOME = mkdtempSync(join(tmpdir(), "fleetlink-cli-home-"));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

const cleanEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("FLEETLINK_") && k !== "XDG_CONFIG_HOME"),
  );

export const cli = (
  args: string[],
  o: { env?: Record<string, string>; input?: string; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> =>
  new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      {
        env: { ...cleanEnv(), HOME, ...o.env },
        cwd: o.cwd,
        timeout: o.timeoutMs ?? 20_000,
        maxBuffer: 10 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (o.input !== undefined) child.stdin!.end(o.input);
    else child.stdin!.end();
  });

/** Runs several CLI invocations at once, a few at a time (each spawn costs ~0.5 s of CPU). */
export const cliAll = async (calls: Parameters<typeof cli>[], parallel = 3): Promise<CliResult[]> => {
  const out: CliResult[] = new Array(calls.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, calls.length) }, async () => {
      for (let i = next++; i < calls.length; i = next++) out[i] = await cli(...calls[i]!);
    }),
  );
  return out;
};

/**
 * A failure as main.ts reports it: the exit status of the error's kind (src/cli/exit-codes.ts) and
 * `fleetlink: FLEETLINK_E_<CODE>: message` on stderr.
 */
export const failedWith = (r: CliResult, code: ErrorName): boolean =>
  r.code === ExitCode[exitCodeByKind[code]] &&
  new RegExp(`^fleetlink: FLEETLINK_E_${code}: `, "m").test(r.stderr);
