import { ErrorCodes, type ErrorName } from "../protocol/errors.ts";

/**
 * The exit status of every `fleetlink` command, one per kind of failure a script may want to tell apart.
 * docs/cli.md lists the same table (test/cli/exit-codes.test.ts keeps the two in sync and runs each code).
 *
 * 1 stays "unexpected" because it is also what Node.js exits with on an uncaught exception. Usage is 64,
 * sysexits.h's EX_USAGE, rather than the POSIX utilities' 2: `fleetlink maelstrom` has always exited 2 for an
 * invalid history, and a script must be able to tell a bad flag from a failed check.
 */
export const ExitCode = {
  ok: 0,
  /** An unexpected failure (a bug, an error of unknown kind, an incompatible hub). */
  internal: 1,
  /** `maelstrom` only: the run's history is invalid (the checker's verdict, not a failure of the CLI). */
  invalidHistory: 2,
  /** Missing or wrong credentials, or a role that may not do this (UNAUTHORIZED, FORBIDDEN, …). */
  auth: 3,
  /** No hub replica, store or object store could be reached, or it answered 503/429 (retry later). */
  unavailable: 4,
  /** The run, node, token, checkpoint or blob named does not exist (`*_NOT_FOUND`). */
  notFound: 5,
  /** The state changed under the command or forbids it (STATUS_CONFLICT, NAME_TAKEN, CONFLICT, …). */
  conflict: 6,
  /** A call's quorum was not met, or its instructions ended without the replies asked for. */
  incomplete: 7,
  /** A bad flag, argument, payload or config file: nothing was done. */
  usage: 64,
} as const;

export type ExitCodeName = keyof typeof ExitCode;

/** Every error kind's exit status; a kind added to ErrorCodes without a row here fails to type-check. */
export const exitCodeByKind: Record<ErrorName, ExitCodeName> = {
  INVALID_ARGUMENT: "usage",
  PAYLOAD_TOO_LARGE: "usage",
  UNSUPPORTED_STORE: "usage",
  UNAUTHORIZED: "auth",
  FORBIDDEN: "auth",
  NOT_ADDRESSEE: "auth",
  NODE_PENDING: "auth",
  OBJECT_STORE_AUTH: "auth",
  HUB_UNAVAILABLE: "unavailable",
  STORE_UNAVAILABLE: "unavailable",
  OBJECT_STORE_UNAVAILABLE: "unavailable",
  STREAM_CLOSED: "unavailable",
  RATE_LIMITED: "unavailable",
  RUN_NOT_FOUND: "notFound",
  NODE_NOT_FOUND: "notFound",
  INSTRUCTION_NOT_FOUND: "notFound",
  TOKEN_NOT_FOUND: "notFound",
  CHECKPOINT_NOT_FOUND: "notFound",
  BLOB_NOT_FOUND: "notFound",
  STATUS_CONFLICT: "conflict",
  NAME_TAKEN: "conflict",
  CONFLICT: "conflict",
  INVALID_TRANSITION: "conflict",
  RUN_FINISHED: "conflict",
  RUN_MISMATCH: "conflict",
  NODE_UNREGISTERED: "conflict",
  HOST_MISMATCH: "conflict",
  QUOTA_EXCEEDED: "conflict",
  SESSION_ENDED: "conflict",
  INCOMPLETE_CALL: "incomplete",
  DELIVERY_FAILED: "incomplete",
  NODE_UNAVAILABLE: "incomplete",
  MESSAGE_EXPIRED: "incomplete",
  INSTRUCTION_ENDED: "incomplete",
  HANDLER_FAILED: "incomplete",
  CANCELLED: "incomplete",
  // A route the hub does not have: a CLI newer than its hub, not a missing resource.
  ROUTE_NOT_FOUND: "internal",
  UNSUPPORTED_PROTOCOL: "internal",
  CHECKSUM_MISMATCH: "internal",
  INTERNAL: "internal",
};

/** For a code this CLI does not know (a newer hub's), the HTTP status it carries decides. */
const byStatus = (status: number): ExitCodeName =>
  status === 401 || status === 403
    ? "auth"
    : status === 404
      ? "notFound"
      : status === 409
        ? "conflict"
        : status === 429 || status === 503 || status === 504
          ? "unavailable"
          : status >= 400 && status < 500
            ? "usage"
            : "internal";

/** Socket and DNS failures that mean "could not reach it" when one escapes unwrapped. */
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_SOCKET",
]);

interface Coded {
  code?: unknown;
  status?: unknown;
  exitCode?: unknown;
  name?: unknown;
  cause?: unknown;
}

/**
 * The exit status for anything a command threw: fleetlink's coded errors by kind (then by HTTP status),
 * commander's parse errors and config-file errors as usage, socket errors and timeouts as unavailable,
 * anything else as internal. The one place that decides; main.ts exits with it.
 */
export const exitCodeOf = (e: unknown, depth = 0): number => {
  if (e === null || typeof e !== "object") return ExitCode.internal;
  const err = e as Coded;
  const code = typeof err.code === "string" ? err.code : "";
  if (code.startsWith("FLEETLINK_E_")) {
    const kind = code.slice("FLEETLINK_E_".length);
    if (Object.hasOwn(exitCodeByKind, kind)) return ExitCode[exitCodeByKind[kind as ErrorName]];
    return ExitCode[byStatus(typeof err.status === "number" ? err.status : 500)];
  }
  // commander: `--help`/`--version` end with 0; every other CommanderError is a parse error.
  if (code.startsWith("commander.")) {
    if (err.exitCode === 0) return ExitCode.ok;
    return ExitCode.usage;
  }
  if (err.name === "ConfigError") return ExitCode.usage;
  if (UNREACHABLE.has(code) || err.name === "TimeoutError") return ExitCode.unavailable;
  // fetch says "fetch failed" and puts the socket's error in `cause`.
  if (err.cause !== undefined && depth < 3) return exitCodeOf(err.cause, depth + 1);
  return ExitCode.internal;
};

/** For docs and tests: the kinds each exit status stands for. */
export const kindsOf = (name: ExitCodeName): ErrorName[] =>
  (Object.keys(ErrorCodes) as ErrorName[]).filter((k) => exitCodeByKind[k] === name);
