// Shell completions are generated from the commander tree: every top-level command is in each script, and the
// bash one, run in a real bash, completes subcommands, options and option choices.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.ts";
import { cliAll } from "./cli-run.ts";

const dir = mkdtempSync(join(tmpdir(), "fleetlink-completion-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `fleetlink --help`'s command names: what the completions must offer at the top. */
const topCommands = (help: string) =>
  [...help.split("Commands:")[1]!.matchAll(/^ {2}([a-z][\w-]*)/gm)]
    .map((m) => m[1]!)
    .filter((c) => c !== "help");

describe("fleetlink completion", () => {
  test("completion - bash, zsh and fish scripts name every top-level command; bash completes subcommands, flags and choices", async () => {
    const [help, bash, zsh, fish, bad] = await cliAll(
      [
        [["--help"]],
        [["completion", "bash"]],
        [["completion", "zsh"]],
        [["completion", "fish"]],
        [["completion", "tcsh"]],
      ],
      5,
    );
    const commands = topCommands(help.stdout);
    expect(commands).toEqual(
      expect.arrayContaining([
        "serve",
        "node",
        "status",
        "nodes",
        "runs",
        "call",
        "tokens",
        "checkpoint",
        "version",
        "completion",
      ]),
    );
    for (const [shell, r] of [
      ["bash", bash],
      ["zsh", zsh],
      ["fish", fish],
    ] as const) {
      expect(r.code, shell).toBe(0);
      for (const c of commands) expect(r.stdout, `${shell}: ${c}`).toMatch(new RegExp(`\\b${c}\\b`));
    }
    expect(zsh.stdout).toMatch(/^#compdef fleetlink/);
    expect(zsh.stdout).toContain("'nodes list'");
    expect(fish.stdout).toContain("complete -c fleetlink -n '__fish_use_subcommand' -a 'nodes'");
    expect(fish.stdout).toMatch(/__fish_seen_subcommand_from call.* -l quorum -r/);
    expect(bad.code).toBe(ExitCode.usage);
    expect(bad.stderr).toMatch(/tcsh.*Allowed choices are bash, zsh, fish/);

    const script = join(dir, "fleetlink.bash");
    writeFileSync(script, bash.stdout);
    execFileSync("bash", ["-n", script]);
    const complete = (...words: string[]) =>
      execFileSync(
        "bash",
        [
          "-c",
          `source ${script}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _fleetlink; printf '%s\\n' "\${COMPREPLY[@]}"`,
        ],
        { encoding: "utf8" },
      )
        .trim()
        .split("\n");
    expect(complete("fleetlink", "")).toEqual(expect.arrayContaining(commands));
    expect(complete("fleetlink", "nodes", "")).toEqual(
      expect.arrayContaining(["list", "show", "approve", "unregister"]),
    );
    expect(complete("fleetlink", "checkpoint", "a")).toEqual(["assign", "activate"]);
    expect(complete("fleetlink", "call", "echo", "--quorum", "")).toEqual(["first", "majority", "all"]);
    expect(complete("fleetlink", "nodes", "list", "--hub", "http://x", "--j")).toEqual(["--json"]);
    expect(complete("fleetlink", "serve", "--log-f")).toEqual(["--log-format"]);
    expect(complete("fleetlink", "serve", "--log-format", "")).toEqual(["json", "pretty"]);
  }, 60_000);
});
