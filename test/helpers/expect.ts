import { expect } from "vitest";
import { type ErrorName, FleetlinkError } from "../../src/protocol/errors.ts";

/** Asserts that the promise rejects with a FleetlinkError of this kind (and field, when given). */
export const rejectsWith = async (
  p: Promise<unknown>,
  kind: ErrorName,
  field?: string,
): Promise<FleetlinkError> => {
  const err = await p.then(
    () => {
      throw new Error(`expected ${kind}, but it resolved`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FleetlinkError);
  const fe = err as FleetlinkError;
  expect(fe.code).toBe(`FLEETLINK_E_${kind}`);
  if (field !== undefined) expect(fe.field).toBe(field);
  return fe;
};

/** A clock tests move by hand. */
export const manualClock = (start = 1_800_000_000_000) => {
  let t = start;
  const clock = () => t;
  clock.advance = (ms: number) => {
    t += ms;
  };
  return clock;
};
export type ManualClock = ReturnType<typeof manualClock>;
