import { isTraceparent } from "../util/tracing.ts";
import { invalid } from "./errors.ts";

/**
 * A traceparent given by a caller: undefined or null (none), or a W3C traceparent; anything else is
 * INVALID_ARGUMENT naming `field`.
 */
export const checkTraceparent = (field: string, v: unknown): string | undefined => {
  if (v === undefined || v === null) return undefined;
  if (!isTraceparent(v))
    throw invalid(
      field,
      "must be a W3C traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, lowercase, ids not all zeros",
    );
  return v;
};
