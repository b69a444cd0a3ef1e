import { describeError, FleetlinkError, invalid } from "./errors.ts";
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  FRAME_OVERHEAD_BYTES,
  MAX_ERROR_MESSAGE_CHARS,
  truncate,
} from "./limits.ts";

/**
 * Frames on every fleetlink stream. Requests and responses are different frame types, so a late or stale
 * response can never be mistaken for a request.
 * - `req`: a call; the peer answers with exactly one `res` or `err` carrying the same id.
 * - `res` / `err`: the answer to a call. An `err` without id reports a malformed frame.
 * - `evt`: one-way.
 */
export type Frame =
  | { t: "req"; id: string; m: string; b?: unknown }
  | { t: "res"; id: string; b?: unknown }
  | { t: "err"; id?: string; e: WireError }
  | { t: "evt"; m: string; b?: unknown };

export interface WireError {
  code: string;
  message: string;
  field?: string;
  definite?: boolean;
}

/** Largest frame accepted on a stream by default, in bytes: the default payload limit plus the envelope. */
export const MAX_FRAME_BYTES = DEFAULT_MAX_PAYLOAD_BYTES + FRAME_OVERHEAD_BYTES;

const str = (v: unknown, field: string, max = 200): string => {
  if (typeof v !== "string" || v.length === 0 || v.length > max)
    throw invalid(field, "must be a non-empty string");
  return v;
};

/** Parses and checks one frame; throws INVALID_ARGUMENT naming the bad field. */
export const parseFrame = (text: string): Frame => {
  let f: Record<string, unknown>;
  try {
    f = JSON.parse(text);
  } catch {
    throw invalid("frame", "is not valid JSON");
  }
  if (typeof f !== "object" || f === null || Array.isArray(f))
    throw invalid("frame", "must be a JSON object");
  switch (f.t) {
    case "req":
      return { t: "req", id: str(f.id, "id"), m: str(f.m, "m"), b: f.b };
    case "res":
      return { t: "res", id: str(f.id, "id"), b: f.b };
    case "err": {
      const e = f.e as Record<string, unknown> | undefined;
      if (typeof e !== "object" || e === null) throw invalid("e", "must be an object");
      return {
        t: "err",
        ...(f.id === undefined ? {} : { id: str(f.id, "id") }),
        e: {
          code: str(e.code, "e.code"),
          message: typeof e.message === "string" ? truncate(e.message, MAX_ERROR_MESSAGE_CHARS) : "",
          ...(typeof e.field === "string" ? { field: e.field } : {}),
        },
      };
    }
    case "evt":
      return { t: "evt", m: str(f.m, "m"), b: f.b };
    default:
      throw invalid("t", "must be one of req, res, err, evt");
  }
};

export const toWireError = (e: unknown): WireError => {
  if (e instanceof FleetlinkError)
    return { ...e.toJSON(), message: truncate(e.message, MAX_ERROR_MESSAGE_CHARS) };
  return {
    code: "FLEETLINK_E_HANDLER_FAILED",
    message: truncate(describeError(e), MAX_ERROR_MESSAGE_CHARS),
    definite: false,
  };
};

/** Rebuilds a typed error from the wire (unknown codes become HANDLER_FAILED, keeping the text). */
export const fromWireError = (w: WireError): FleetlinkError => {
  if (typeof w?.code !== "string")
    return new FleetlinkError("HANDLER_FAILED", `malformed error: ${JSON.stringify(w)}`);
  const kind = w.code.startsWith("FLEETLINK_E_") ? w.code.slice("FLEETLINK_E_".length) : "HANDLER_FAILED";
  try {
    return new FleetlinkError(kind as "HANDLER_FAILED", w.message, w.field ? { field: w.field } : {});
  } catch {
    return new FleetlinkError("HANDLER_FAILED", `${w.code}: ${w.message}`);
  }
};
