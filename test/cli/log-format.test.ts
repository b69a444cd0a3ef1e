// `--log-format`: unset, a person at a terminal gets one readable line per entry and a pipe gets JSON; either
// can be asked for. Real `fleetlink serve` processes; the terminal is a pseudo-terminal made by script(1).
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { prettyLine } from "../../src/cli/log-line.ts";
import { logFormat } from "../../src/cli/logging.ts";
import { CLI } from "./cli-run.ts";

const dir = mkdtempSync(join(tmpdir(), "fleetlink-logs-"));
writeFileSync(join(dir, "admin.token"), "admin-secret-for-logs\n", { mode: 0o600 });
writeFileSync(join(dir, "enroll.token"), "enroll-secret-for-logs\n", { mode: 0o600 });
const serve = [CLI, "serve", "--db", "memory:", "--port", "0"];
const tokens = ["--token-file", join(dir, "admin.token"), "--enroll-token-file", join(dir, "enroll.token")];
const ESC = String.fromCharCode(27);
const hasScript = spawnSync("script", ["--version"]).status === 0;

/** Runs `cmd args` until its output shows the hub listening, then ends it; resolves with all it wrote. */
const untilListening = (cmd: string, args: string[], env: Record<string, string> = {}): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("FLEETLINK_"))),
        ...env,
      },
    });
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`not listening within 15 s:\n${out}`));
    }, 15_000);
    const seen = (d: Buffer) => {
      out += d;
      if (/listening on http/.test(out) && /Server listening/.test(out)) child.kill("SIGTERM");
    };
    child.stdout.on("data", seen);
    child.stderr.on("data", seen);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(out);
    });
  });

describe("log format", () => {
  test("logFormat - asked wins; unset is pretty at a terminal and json elsewhere", () => {
    expect(logFormat(undefined, true)).toBe("pretty");
    expect(logFormat("", true)).toBe("pretty");
    expect(logFormat(undefined, false)).toBe("json");
    expect(logFormat("json", true)).toBe("json");
    expect(logFormat("pretty", false)).toBe("pretty");
  });

  test("prettyLine - one line per entry: time, level, message, then fields; an error by its message, never its stack", () => {
    const time = new Date(2026, 0, 2, 3, 4, 5, 67).getTime();
    const line = prettyLine(
      `${JSON.stringify({
        level: 40,
        time,
        pid: 1,
        hostname: "vm",
        node: "worker-1",
        attempt: 2,
        err: { type: "TypeError", message: "x is not a function", stack: "TypeError: x…\n    at a.js:1" },
        why: "cannot divide 1 by zero",
        hub: "http://127.0.0.1:7070",
        msg: "handler failed",
      })}\n`,
    );
    expect(line).toBe(
      '03:04:05.067 WARN  handler failed node=worker-1 attempt=2 err="TypeError: x is not a function" ' +
        'why="cannot divide 1 by zero" hub=http://127.0.0.1:7070\n',
    );
    expect(prettyLine(JSON.stringify({ level: 30, time, msg: "online", nested: { a: [1] } }))).toBe(
      '03:04:05.067 INFO  online nested={"a":[1]}\n',
    );
    expect(prettyLine(JSON.stringify({ level: 50, time, msg: "x" }), true)).toBe(
      `03:04:05.067 ${ESC}[31mERROR${ESC}[0m x\n`,
    );
    expect(prettyLine("not json")).toBe("not json\n");
  });

  test("serve - stderr a pipe: one JSON object per line; --log-format pretty: one readable line", async () => {
    const json = await untilListening(process.execPath, [...serve, ...tokens]);
    const logLines = json.split("\n").filter((l) => l.startsWith("{"));
    expect(logLines.length).toBeGreaterThan(0);
    for (const l of logLines) expect(JSON.parse(l)).toHaveProperty("level");
    expect(json).toMatch(/"msg":"Server listening at http:\/\/127\.0\.0\.1:\d+"/);

    const pretty = await untilListening(process.execPath, [...serve, ...tokens, "--log-format", "pretty"]);
    expect(pretty).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}Server listening at http:\/\/127\.0\.0\.1:\d+$/m);
    expect(pretty).not.toMatch(/^\{"level"/m);
    expect(pretty).not.toContain(`${ESC}[`); // no colours when stderr is not a terminal
  }, 40_000);

  test.skipIf(!hasScript)(
    "serve - at a terminal, unset: readable one-line entries, no JSON; --log-format json still JSON",
    async () => {
      // script(1) gives the command a pseudo-terminal as stdin, stdout and stderr.
      const cmd = (extra: string[]) => [process.execPath, ...serve, ...tokens, ...extra].join(" ");
      const tty = await untilListening("script", ["-qefc", cmd([]), "/dev/null"]);
      const plain = tty.replace(new RegExp(`${ESC}\\[[0-9;]*m`, "g"), "");
      expect(plain).toMatch(
        /^\d\d:\d\d:\d\d\.\d{3} INFO {2}Server listening at http:\/\/127\.0\.0\.1:\d+\r?$/m,
      );
      expect(plain).not.toMatch(/^\{"level"/m);
      const asked = await untilListening("script", ["-qefc", cmd(["--log-format", "json"]), "/dev/null"]);
      expect(asked).toMatch(/^\{"level":30,.*"msg":"Server listening at/m);
    },
    40_000,
  );
});
