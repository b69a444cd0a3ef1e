import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";

const CLI = join(import.meta.dirname, "../../src/cli/main.ts");
export const FIXTURE_HANDLERS = join(import.meta.dirname, "../fixtures/handlers.ts");

export interface Proc {
  child: ChildProcess;
  /** First capture of the ready pattern (the hub URL, the node id). */
  value: string;
  output: () => string;
  kill: (sig?: NodeJS.Signals) => Promise<void>;
}

/** Runs `fleetlink <args>` as a real OS process; resolves once its stdout matches `ready`. */
export const startCli = (args: string[], ready: RegExp, env: Record<string, string> = {}): Promise<Proc> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    let out = "";
    let err = "";
    child.stderr!.on("data", (d) => {
      err += d;
      if (err.length > 100_000) err = err.slice(-50_000);
    });
    const timer = setTimeout(
      () => reject(new Error(`fleetlink ${args.join(" ")}: not ready in 15 s\n${err}`)),
      15_000,
    );
    child.stdout!.on("data", (d) => {
      out += d;
      const m = out.match(ready);
      if (m) {
        clearTimeout(timer);
        resolve({
          child,
          value: m[1]!,
          output: () => out + err,
          kill: (sig = "SIGTERM") =>
            new Promise((res) => {
              if (child.exitCode !== null || child.signalCode !== null) return res();
              child.once("exit", () => res());
              child.kill(sig);
            }),
        });
      }
    });
    child.once("exit", (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`fleetlink ${args[0]} exited ${code ?? sig}: ${err.slice(-3000)}`));
    });
  });

/** The enrollment token of a test hub started with admin token `token` (they must differ). */
export const enrollTokenFor = (token: string): string => `${token}-enroll`;

export const startHubProc = (db: string, token: string, extra: string[] = []) =>
  startCli(
    [
      "serve",
      "--db",
      db,
      "--port",
      "0",
      "--token",
      token,
      ...(extra.includes("--enroll-token") ? [] : ["--enroll-token", enrollTokenFor(token)]),
      ...extra,
    ],
    /listening on (\S+)/,
  );

export const startNodeProc = (
  hubs: string[],
  name: string,
  token: string,
  identity: string,
  env: Record<string, string> = {},
  heartbeatMs = 500,
) =>
  startCli(
    [
      "node",
      "--hub",
      hubs.join(","),
      "--name",
      name,
      "--handlers",
      FIXTURE_HANDLERS,
      "--token",
      token,
      "--identity",
      identity,
      "--heartbeat",
      String(heartbeatMs),
    ],
    /online as (\S+)/,
    env,
  );
