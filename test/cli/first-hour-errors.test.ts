// What a new user sees when a call fails: IncompleteCallError says per node what happened (bounded), and
// serializes its errors as node → { code, message } instead of `{}`; an empty configuration is INVALID_ARGUMENT.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { checkNodesGiven, IncompleteCallError } from "../../src/coordinator/errors.ts";
import { FleetlinkError } from "../../src/protocol/errors.ts";
import { startFleet, type TestFleet } from "../helpers/fleet.ts";

const A = "0198a3f0-0000-7000-8000-00000000000a";
const B = "0198a3f0-0000-7000-8000-00000000000b";

describe("IncompleteCallError", () => {
  test("message - names each failed node with its code and its handler's message", () => {
    const e = new IncompleteCallError(
      "quorum cannot be met",
      new Map([["0198a3f0-0000-7000-8000-00000000000c", 5]]),
      new Map([
        [A, new FleetlinkError("HANDLER_FAILED", "alpha refuses")],
        [B, new FleetlinkError("NODE_UNAVAILABLE", "node missed its heartbeat window")],
      ]),
    );
    expect(e.message).toBe(
      `incomplete call: quorum cannot be met (1 reply, 2 failed): ${A}: FLEETLINK_E_HANDLER_FAILED "alpha refuses"; ` +
        `${B}: FLEETLINK_E_NODE_UNAVAILABLE "node missed its heartbeat window"`,
    );
  });

  test("message - bounded: long messages are cut, and past 10 nodes the rest are counted", () => {
    const errors = new Map(
      Array.from({ length: 50 }, (_, i) => [
        `0198a3f0-0000-7000-8000-${String(i).padStart(12, "0")}`,
        new FleetlinkError("HANDLER_FAILED", "x".repeat(10_000)),
      ]),
    );
    const e = new IncompleteCallError("timed out", new Map(), errors);
    expect(e.message.length).toBeLessThan(3000);
    expect(e.message).toContain("40 more (see .errors)");
    expect(e.message).toContain(`${"x".repeat(159)}…`);
    expect(e.errors.size).toBe(50);
  });

  test("toJSON - errors as node → { code, message }, with the reason and the nodes that replied", () => {
    const e = new IncompleteCallError(
      "timed out",
      new Map([[B, 1]]),
      new Map([[A, new FleetlinkError("MESSAGE_EXPIRED", "no reply within 100 ms")]]),
    );
    expect(JSON.parse(JSON.stringify(e))).toEqual({
      code: "FLEETLINK_E_INCOMPLETE_CALL",
      message: e.message,
      definite: false,
      reason: "timed out",
      replied: [B],
      errors: { [A]: { code: "FLEETLINK_E_MESSAGE_EXPIRED", message: "no reply within 100 ms" } },
      failed: [{ id: A, name: null, code: "FLEETLINK_E_MESSAGE_EXPIRED", message: "no reply within 100 ms" }],
    });
  });
});

describe("a failing call through a real hub", () => {
  let f: TestFleet;
  beforeAll(async () => {
    f = await startFleet();
    for (const name of ["alpha", "beta"])
      await f.node(name, {
        fail: () => {
          throw new Error(`${name} refuses`);
        },
      });
  });
  afterAll(() => f.close());

  test("the handlers' messages are in e.message and in JSON.stringify(e)", async () => {
    const fleet = await f.fleet();
    const nodes = await fleet.nodes();
    const run = await fleet.createRun();
    const e = (await run
      .configuration(nodes)
      .call("fail", null, {
        // Waits for every node, so that both failures are in the error.
        quorum: ({ replies, errors, nodes: all }) =>
          replies.size + errors.size === all.length ? "fail" : "wait",
        timeoutMs: 10_000,
      })
      .catch((x) => x)) as IncompleteCallError;
    expect(e).toBeInstanceOf(IncompleteCallError);
    const byName = new Map(nodes.map((n) => [n.name, n.id]));
    // Named as `name (…last 8 hex of the id)`: UUIDv7 ids enrolled together share their first digits.
    expect(e.message).toContain(
      `alpha (…${byName.get("alpha")!.slice(-8)}): FLEETLINK_E_HANDLER_FAILED "alpha refuses"`,
    );
    expect(e.message).toContain(
      `beta (…${byName.get("beta")!.slice(-8)}): FLEETLINK_E_HANDLER_FAILED "beta refuses"`,
    );
    const json = JSON.parse(JSON.stringify(e));
    expect(json.errors[byName.get("alpha")!]).toEqual({
      code: "FLEETLINK_E_HANDLER_FAILED",
      message: "alpha refuses",
    });
    expect(Object.keys(json.errors).sort()).toEqual([...byName.values()].sort());
  });
});

describe("empty configuration", () => {
  test("checkNodesGiven - INVALID_ARGUMENT naming nodes and saying what to check; silent for one node", () => {
    const e = (() => {
      try {
        checkNodesGiven([], "square");
      } catch (x) {
        return x as FleetlinkError;
      }
    })()!;
    expect(e).toBeInstanceOf(FleetlinkError);
    expect(e.code).toBe("FLEETLINK_E_INVALID_ARGUMENT");
    expect(e.field).toBe("nodes");
    expect(e.definite).toBe(true);
    expect(e.message).toMatch(/"square" addressed to an empty configuration.*fleet\.nodes\(\)/);
    expect(() => checkNodesGiven([A], "square")).not.toThrow();
  });
});
