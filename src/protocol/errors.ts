/**
 * Every error fleetlink raises or sends over the wire has a stable code from this table.
 * `definite: true` means the operation surely did not happen (safe to retry or give up);
 * `definite: false` means it may have happened (a retry must be idempotent).
 * docs/errors.md lists the same table; test/protocol/errors.test.ts keeps the two in sync.
 */
export const ErrorCodes = {
  INVALID_ARGUMENT: { status: 400, definite: true, text: "An argument is missing or malformed" },
  PAYLOAD_TOO_LARGE: { status: 413, definite: true, text: "The payload exceeds the size limit" },
  UNAUTHORIZED: { status: 401, definite: true, text: "Missing or wrong credentials" },
  FORBIDDEN: { status: 403, definite: true, text: "The caller may not act on this resource" },
  RUN_NOT_FOUND: { status: 404, definite: true, text: "No run with this id" },
  NODE_NOT_FOUND: { status: 404, definite: true, text: "No node with this id" },
  INSTRUCTION_NOT_FOUND: { status: 404, definite: true, text: "No instruction with this id" },
  NOT_ADDRESSEE: { status: 403, definite: true, text: "The instruction is addressed to another node" },
  RUN_MISMATCH: { status: 409, definite: true, text: "The instruction belongs to another run" },
  RUN_FINISHED: { status: 409, definite: true, text: "The run is finished and takes no new instructions" },
  INVALID_TRANSITION: { status: 409, definite: true, text: "This status change is not allowed" },
  STATUS_CONFLICT: {
    status: 409,
    definite: true,
    text: "The status changed concurrently (compare-and-set failed)",
  },
  NODE_UNREGISTERED: { status: 409, definite: true, text: "The node is unregistered" },
  NODE_PENDING: { status: 403, definite: true, text: "The node is waiting for an admin to approve it" },
  TOKEN_NOT_FOUND: { status: 404, definite: true, text: "No token (enrollment or principal) with this id" },
  NAME_TAKEN: { status: 409, definite: true, text: "A live node already has this name" },
  MESSAGE_EXPIRED: { status: 410, definite: true, text: "The instruction's TTL passed without a reply" },
  INSTRUCTION_ENDED: {
    status: 410,
    definite: true,
    text: "The instruction already ended (an error outcome was recorded); a late reply is dropped",
  },
  NODE_UNAVAILABLE: {
    status: 503,
    definite: false,
    text: "The node went offline (it left, missed its heartbeat window, or was unregistered) before replying",
  },
  DELIVERY_FAILED: {
    status: 503,
    definite: false,
    text: "The instruction's lease expired the maximum number of times without a reply",
  },
  CANCELLED: {
    status: 409,
    definite: true,
    text: "The call was withdrawn or cancelled before the node replied (a running handler is told to stop)",
  },
  HANDLER_FAILED: { status: 500, definite: false, text: "The node's handler threw an error" },
  STREAM_CLOSED: { status: 503, definite: false, text: "The stream closed before the call was answered" },
  INCOMPLETE_CALL: {
    status: 502,
    definite: false,
    text: "A quorum call could not be completed; the error lists which nodes failed and why",
  },
  RATE_LIMITED: { status: 429, definite: true, text: "Too many requests of this kind; retry later" },
  CONFLICT: { status: 409, definite: true, text: "Another operation of this kind is in progress" },
  CHECKPOINT_NOT_FOUND: {
    status: 404,
    definite: true,
    text: "No complete checkpoint (or object) with this id",
  },
  OBJECT_STORE_AUTH: { status: 502, definite: true, text: "The object store refused the credentials" },
  OBJECT_STORE_UNAVAILABLE: { status: 503, definite: false, text: "The object store could not be reached" },
  CHECKSUM_MISMATCH: {
    status: 502,
    definite: true,
    text: "Stored bytes do not match their recorded size or checksum",
  },
  HOST_MISMATCH: {
    status: 409,
    definite: true,
    text: "The host role in the request does not match the node's assigned role",
  },
  UNSUPPORTED_PROTOCOL: {
    status: 400,
    definite: true,
    text: "The peer speaks a node protocol version this side does not support; the message names both",
  },
  SESSION_ENDED: {
    status: 410,
    definite: true,
    text: "The node's HTTP session ended (replaced, revoked, or unknown to this replica); say hello again",
  },
  BLOB_NOT_FOUND: {
    status: 404,
    definite: true,
    text: "No such blob, or the caller may not read it; the message names the reference",
  },
  QUOTA_EXCEEDED: {
    status: 413,
    definite: true,
    text: "The run's blob quota would be exceeded; the message names the limit",
  },
  ROUTE_NOT_FOUND: { status: 404, definite: true, text: "No such route on this hub" },
  UNSUPPORTED_STORE: { status: 400, definite: true, text: "The store URL names no known backend" },
  STORE_UNAVAILABLE: { status: 503, definite: false, text: "The store could not be reached" },
  HUB_UNAVAILABLE: {
    status: 503,
    definite: false,
    text: "No hub replica could be reached (refused, reset or timed out); the request may have happened",
  },
  INTERNAL: {
    status: 500,
    definite: false,
    text: "An unexpected failure in the hub (a bug: please report it); the operation may have happened",
  },
} as const;

export type ErrorName = keyof typeof ErrorCodes;
export type ErrorCode = `FLEETLINK_E_${ErrorName}`;

export const errorCode = (name: ErrorName): ErrorCode => `FLEETLINK_E_${name}`;

export class FleetlinkError extends Error {
  override readonly name = "FleetlinkError";
  readonly code: ErrorCode;
  readonly status: number;
  readonly definite: boolean;
  /** The input field at fault, when there is one. */
  readonly field: string | undefined;
  /**
   * The node's own code of a HANDLER_FAILED error, when its handler failed with one (a Python
   * `HandlerError("APP_E_NOT_A_NUMBER", …)`, any node's reply error whose code is not a FLEETLINK_E_ one).
   */
  readonly appCode: string | undefined;

  constructor(
    kind: ErrorName,
    message?: string,
    opts: { field?: string; cause?: unknown; appCode?: string } = {},
  ) {
    const entry = ErrorCodes[kind];
    super(message ?? entry.text, { cause: opts.cause });
    this.code = errorCode(kind);
    this.status = entry.status;
    this.definite = entry.definite;
    this.field = opts.field;
    this.appCode = kind === "HANDLER_FAILED" ? opts.appCode : undefined;
  }

  get kind(): ErrorName {
    return this.code.slice("FLEETLINK_E_".length) as ErrorName;
  }

  toJSON(): { code: ErrorCode; message: string; field?: string; definite: boolean; appCode?: string } {
    return {
      code: this.code,
      message: this.message,
      definite: this.definite,
      ...(this.field ? { field: this.field } : {}),
      ...(this.appCode ? { appCode: this.appCode } : {}),
    };
  }
}

/** The code to show for an error: a node's own code when its handler failed with one, else the error's code. */
export const shownCode = (e: { code?: unknown; appCode?: string }): string =>
  e.appCode ?? String(e.code ?? "error");

export const isFleetlinkError = (e: unknown, kind?: ErrorName): e is FleetlinkError =>
  e instanceof FleetlinkError && (kind === undefined || e.kind === kind);

/** Shorthand for an INVALID_ARGUMENT error naming its field. */
export const invalid = (field: string, message: string): FleetlinkError =>
  new FleetlinkError("INVALID_ARGUMENT", `${field}: ${message}`, { field });

/** Text for any thrown value, even one whose toString throws. */
export const describeError = (e: unknown): string => {
  try {
    return e instanceof Error ? e.message : String(e);
  } catch {
    return Object.prototype.toString.call(e);
  }
};
