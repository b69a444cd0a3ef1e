import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { ErrorCodes, FleetlinkError } from "../../src/protocol/errors.ts";

describe("error table", () => {
  const doc = readFileSync(join(import.meta.dirname, "../../docs/errors.md"), "utf8");
  const rows = new Map(
    [...doc.matchAll(/^\|\s*`(FLEETLINK_E_[A-Z_]+)`\s*\|\s*(\d+)\s*\|\s*(yes|no)\s*\|/gm)].map((m) => [
      m[1],
      { status: Number(m[2]), definite: m[3] === "yes" },
    ]),
  );

  test("errors - docs/errors.md lists every code with its status and definiteness, and no other", () => {
    const table = new Map(
      Object.entries(ErrorCodes).map(([k, v]) => [
        `FLEETLINK_E_${k}`,
        { status: v.status, definite: v.definite },
      ]),
    );
    expect(rows).toEqual(table);
  });

  test("errors - a FleetlinkError carries code, status, definiteness, field and cause", () => {
    const cause = new Error("low level");
    const e = new FleetlinkError("PAYLOAD_TOO_LARGE", "too big", { field: "payload", cause });
    expect(e).toMatchObject({
      code: "FLEETLINK_E_PAYLOAD_TOO_LARGE",
      status: 413,
      definite: true,
      field: "payload",
    });
    expect(e.cause).toBe(cause);
    expect(e.kind).toBe("PAYLOAD_TOO_LARGE");
    expect(JSON.parse(JSON.stringify(e))).toEqual({
      code: "FLEETLINK_E_PAYLOAD_TOO_LARGE",
      message: "too big",
      definite: true,
      field: "payload",
    });
  });
});
