import type { TSchema } from "@sinclair/typebox";
import { type TypeCheck, TypeCompiler } from "@sinclair/typebox/compiler";
import { describeError, FleetlinkError, invalid } from "./errors.ts";
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  FRAME_OVERHEAD_BYTES,
  MAX_ERROR_MESSAGE_CHARS,
  truncate,
} from "./limits.ts";
import {
  checkError,
  ErrFrameSchema,
  EvtFrameSchema,
  ReqFrameSchema,
  ResFrameSchema,
} from "./stream-schemas.ts";

/**
 * Frames on every fleetlink stream. Requests and responses are different frame types, so a late or stale
 * response can never be mistaken for a request.
 * - `req`: a call; the peer answers with exactly one `res` or `err` carrying the same id.
 * - `res` / `err`: the answer to a call. An `err` without id reports a malformed frame.
 * - `evt`: one-way.
 * The schemas of these frames and of every stream message's body are in stream-schemas.ts.
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

type Envelope = { check: TypeCheck<TSchema>; build: (f: Record<string, unknown>) => Frame };
/** Envelope checks by frame type, compiled once (from stream-schemas.ts, the same schemas the docs show). */
const envelopes: Record<string, Envelope> = {
  req: {
    check: TypeCompiler.Compile(ReqFrameSchema),
    build: (f) => ({ t: "req", id: f.id as string, m: f.m as string, b: f.b }),
  },
  res: {
    check: TypeCompiler.Compile(ResFrameSchema),
    build: (f) => ({ t: "res", id: f.id as string, b: f.b }),
  },
  err: {
    check: TypeCompiler.Compile(ErrFrameSchema),
    build: (f) => {
      const e = f.e as WireError;
      return {
        t: "err",
        ...(f.id === undefined ? {} : { id: f.id as string }),
        e: {
          code: e.code,
          message: truncate(e.message, MAX_ERROR_MESSAGE_CHARS),
          ...(e.field === undefined ? {} : { field: e.field }),
        },
      };
    },
  },
  evt: {
    check: TypeCompiler.Compile(EvtFrameSchema),
    build: (f) => ({ t: "evt", m: f.m as string, b: f.b }),
  },
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
  const env = typeof f.t === "string" && Object.hasOwn(envelopes, f.t) ? envelopes[f.t] : undefined;
  if (!env) throw invalid("t", "must be one of req, res, err, evt");
  if (!env.check.Check(f)) throw checkError(env.check, f);
  return env.build(f);
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
  if (!w.code.startsWith("FLEETLINK_E_"))
    // A node's own code (an application's): kept beside the kind, never folded into it.
    return new FleetlinkError("HANDLER_FAILED", w.message, {
      appCode: w.code.slice(0, 200),
      ...(w.field ? { field: w.field } : {}),
    });
  const kind = w.code.slice("FLEETLINK_E_".length);
  try {
    return new FleetlinkError(kind as "HANDLER_FAILED", w.message, w.field ? { field: w.field } : {});
  } catch {
    return new FleetlinkError("HANDLER_FAILED", `${w.code}: ${w.message}`);
  }
};
