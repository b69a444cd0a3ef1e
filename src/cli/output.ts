import { type Command, Option } from "commander";

/** `--json` on every command that reads: machine-readable output instead of a table. */
export const jsonOption = (): Option => new Option("--json", "print JSON instead of a table");

export const withJson = (c: Command): Command => c.addOption(jsonOption());

export const printJson = (v: unknown): void => void process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);

export const print = (s: string): void => void process.stdout.write(s.endsWith("\n") ? s : `${s}\n`);

/** What `cmd` prints: `v` as JSON with `--json`, else the text `human(v)` makes for people. */
export const show = <T>(cmd: Command, v: T, human: (v: T) => string): void =>
  cmd.opts().json ? printJson(v) : print(human(v));

export type Column<T> = [header: string, cell: (row: T) => unknown];

/** A plain aligned table (no borders, like kubectl): header row, then one row per item. */
export const table = <T>(rows: readonly T[], columns: Column<T>[], empty = "(none)"): string => {
  if (rows.length === 0) return empty;
  const cells = rows.map((r) => columns.map(([, f]) => text(f(r))));
  const widths = columns.map(([h], i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (cs: string[]) =>
    cs
      .map((c, i) => (i === cs.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(columns.map(([h]) => h)), ...cells.map(line)].join("\n");
};

/** Key/value lines for one record (`nodes show`, `status`). */
export const fields = (pairs: [string, unknown][]): string => {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(w + 1)}  ${text(v)}`).join("\n");
};

const text = (v: unknown): string =>
  v === null || v === undefined
    ? "-"
    : typeof v === "string"
      ? v
      : typeof v === "object"
        ? JSON.stringify(v)
        : String(v);

/** An epoch-ms time as ISO 8601 (UTC, to the second), with how long ago it was. */
export const when = (ms: number | null | undefined, now = Date.now()): string => {
  if (ms === null || ms === undefined) return "-";
  const iso = new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  return `${iso} (${ago(now - ms)})`;
};

export const ago = (ms: number): string => {
  const s = Math.round(Math.abs(ms) / 1000);
  const t =
    s < 90
      ? `${s}s`
      : s < 5400
        ? `${Math.round(s / 60)}m`
        : s < 129_600
          ? `${Math.round(s / 3600)}h`
          : `${Math.round(s / 86_400)}d`;
  return ms >= 0 ? `${t} ago` : `in ${t}`;
};

/** `--help` examples: shown after the options. */
export const examples = (c: Command, lines: string[]): Command =>
  c.addHelpText("after", `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`);
