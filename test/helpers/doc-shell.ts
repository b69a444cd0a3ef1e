// Runs the shell blocks of a document as a reader would paste them: one bash shell, in order, `set -eo pipefail`,
// a marker before each block, with $HOME a temporary directory and no FLEETLINK_* variable of the caller. Every
// process the shell starts stays in its process group, which is killed when the shell exits or its time is up.
import { spawn } from "node:child_process";
import { createServer } from "node:net";

/** The ```sh tour``` blocks of a markdown text, in order. */
export const tourBlocks = (markdown: string): string[] =>
  [...markdown.matchAll(/^```sh tour\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);

export const freePort = async (): Promise<number> => {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
};

/** The blocks as one script: `::block N::` before block N, `::done::` at the end, the failing line named. */
export const tourScript = (blocks: string[]): string =>
  `set -eo pipefail\ntrap 'echo "::failed: line $LINENO: $BASH_COMMAND::"' ERR\n${blocks
    .map((b, i) => `echo "::block ${i + 1}::"\n${b}`)
    .join("\n")}\necho "::done::"\n`;

/** What block n printed, from the output of a tourScript. */
export const blockOutput = (out: string, n: number): string => {
  const from = out.indexOf(`::block ${n}::`);
  const to = out.indexOf(`::block ${n + 1}::`);
  return from < 0 ? "" : out.slice(from, to < 0 ? undefined : to);
};

/** Runs `script` in bash (cwd `cwd`, HOME `home`); ends the whole process group when done or after `timeoutMs`. */
export const runShell = (
  script: string,
  o: { cwd: string; home: string; timeoutMs: number },
): Promise<{ code: number | null; out: string }> =>
  new Promise((resolve) => {
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("FLEETLINK_") && k !== "XDG_CONFIG_HOME"),
    );
    const sh = spawn("bash", ["-c", script], {
      cwd: o.cwd,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...env, HOME: o.home, npm_config_update_notifier: "false" },
    });
    let out = "";
    sh.stdout.on("data", (d) => (out += d));
    sh.stderr.on("data", (d) => (out += d));
    const killGroup = (sig: NodeJS.Signals) => {
      try {
        process.kill(-sh.pid!, sig);
      } catch {
        // the group is gone already
      }
    };
    const timer = setTimeout(() => {
      out += `\n::timed out after ${o.timeoutMs} ms::\n`;
      killGroup("SIGTERM");
    }, o.timeoutMs);
    sh.once("exit", (code) => {
      clearTimeout(timer);
      // Whatever the document left running (it should have stopped everything itself).
      killGroup("SIGKILL");
      resolve({ code, out });
    });
  });
