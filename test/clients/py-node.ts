import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The interpreter the Python node must run on: the system's (3.11), not a developer's pyenv. */
export const PYTHON = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
export const PY_CLIENT = join(import.meta.dirname, "../../clients/python");

export interface PyNode {
  child: ChildProcess;
  nodeId: string;
  workDir: string;
  output: () => string;
  /** Lines `start <instructionId> <method>` the conformance handlers wrote. */
  calls: () => string[];
  /** Sends the signal; resolves with the exit code (or the signal's name) once the process ended. */
  kill: (sig?: NodeJS.Signals) => Promise<number | string>;
}

/**
 * Runs `python3 -m fleetlink_node --handlers fleetlink_node.conformance` (or o.handlers) as the conformance kit does (hub,
 * token, name and work dir through FLEETLINK_* variables); resolves once it prints that it is online.
 */
export const startPyNode = (o: {
  hubs: string[];
  enrollToken: string;
  name: string;
  heartbeatMs?: number;
  /** The --handlers module or file. (Default: fleetlink_node.conformance) */
  handlers?: string;
}): Promise<PyNode> =>
  new Promise((resolve, reject) => {
    const workDir = mkdtempSync(join(tmpdir(), "fleetlink-py-"));
    const child = spawn(
      PYTHON,
      [
        "-m",
        "fleetlink_node",
        "--handlers",
        o.handlers ?? "fleetlink_node.conformance",
        "--heartbeat-ms",
        String(o.heartbeatMs ?? 1000),
      ],
      {
        cwd: PY_CLIENT,
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          PYTHONPATH: PY_CLIENT,
          PYTHONDONTWRITEBYTECODE: "1",
          FLEETLINK_HUB: o.hubs.join(","),
          FLEETLINK_ENROLL_TOKEN: o.enrollToken,
          FLEETLINK_NODE_NAME: o.name,
          FLEETLINK_WORK_DIR: workDir,
        },
      },
    );
    let out = "";
    let err = "";
    let exit: Promise<number | string> | undefined;
    const exited = new Promise<number | string>((r) =>
      child.once("exit", (code, sig) => r(code ?? sig ?? "unknown")),
    );
    child.stderr!.on("data", (d) => {
      err = (err + d).slice(-50_000);
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`python node ${o.name}: not online in 20 s\n${err}`));
    }, 20_000);
    child.stdout!.on("data", (d) => {
      out += d;
      const m = out.match(/online as (\S+)/);
      if (m && !exit) {
        clearTimeout(timer);
        exit = exited;
        resolve({
          child,
          nodeId: m[1]!,
          workDir,
          output: () => out + err,
          calls: () => {
            const f = join(workDir, "calls.log");
            return existsSync(f) ? readFileSync(f, "utf8").split("\n").filter(Boolean) : [];
          },
          kill: (sig = "SIGTERM") => {
            if (child.exitCode === null && child.signalCode === null) child.kill(sig);
            return exited;
          },
        });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      if (!exit) reject(new Error(`python node ${o.name} exited ${code} before it was online:\n${err}`));
    });
  });
