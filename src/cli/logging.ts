import { Option } from "commander";
import type { Logger } from "pino";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** `--log-level` and `--log-format` for the long-running commands (serve, node). */
export const logOptions = (defaultLevel: (typeof LOG_LEVELS)[number]): Option[] => [
  new Option("--log-level <level>", "log level")
    .choices(LOG_LEVELS)
    .env("FLEETLINK_LOG_LEVEL")
    .default(defaultLevel),
  new Option("--log-format <format>", "json: one JSON object per line (for collectors); pretty: for people")
    .choices(["json", "pretty"])
    .env("FLEETLINK_LOG_FORMAT")
    .default("json"),
];

/**
 * A pino logger on stderr (stdout carries the command's own output: URLs, tokens, ids). pino (and pino-pretty,
 * only for the pretty format) is imported here, by the commands that log, not by every start of the CLI.
 */
export const createLogger = async (level: string, format: string): Promise<Logger> => {
  const { pino } = await import("pino");
  if (format !== "pretty") return pino({ level }, pino.destination({ dest: 2, sync: true }));
  const { default: pretty } = await import("pino-pretty");
  return pino({ level }, pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY === true }));
};
