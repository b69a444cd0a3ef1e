import { Option } from "commander";
import type { Logger } from "pino";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export const LOG_FORMATS = ["json", "pretty"] as const;

/** `--log-level` and `--log-format` for the long-running commands (serve, node). */
export const logOptions = (defaultLevel: (typeof LOG_LEVELS)[number]): Option[] => [
  new Option("--log-level <level>", "log level")
    .choices(LOG_LEVELS)
    .env("FLEETLINK_LOG_LEVEL")
    .default(defaultLevel),
  // No commander default: unset means "decide by where stderr goes" (logFormat below).
  new Option(
    "--log-format <format>",
    "json: one JSON object per line (for collectors); pretty: one readable line per entry " +
      "(default: pretty when stderr is a terminal, else json)",
  )
    .choices(LOG_FORMATS)
    .env("FLEETLINK_LOG_FORMAT"),
];

/**
 * The format to log in: the one asked for, else `pretty` for a person at a terminal (where the command's own
 * plain lines go too, and JSON objects between them are hard to read) and `json` for a pipe, a file or journald.
 */
export const logFormat = (asked: string | undefined, stderrIsTTY: boolean): (typeof LOG_FORMATS)[number] =>
  asked === "json" || asked === "pretty" ? asked : stderrIsTTY ? "pretty" : "json";

/**
 * A pino logger on stderr (stdout carries the command's own output: URLs, tokens, ids). pino is imported here, by
 * the commands that log, not by every start of the CLI. `pretty` is one line per entry (log-line.ts), written to
 * process.stderr, which is synchronous for files, terminals and (on Linux) pipes, like the JSON destination.
 */
export const createLogger = async (level: string, format: string | undefined): Promise<Logger> => {
  const { pino } = await import("pino");
  const tty = process.stderr.isTTY === true;
  if (logFormat(format, tty) === "json") return pino({ level }, pino.destination({ dest: 2, sync: true }));
  const { prettyLine } = await import("./log-line.ts");
  return pino({ level }, { write: (line: string) => process.stderr.write(prettyLine(line, tty)) });
};
