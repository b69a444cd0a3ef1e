// The agent never dies of its handler: whatever a handler returns or throws becomes exactly one typed reply.
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { IncompleteCallError } from "../../src/coordinator/errors.ts";
import { openStore } from "../../src/store/open.ts";
import { startFleet, type TestFleet } from "../helpers/fleet.ts";

describe("agent results", () => {
  let f: TestFleet;
  beforeEach(async () => {
    // A small payload limit, so "too large" needs no megabytes.
    f = await startFleet({ store: await openStore("memory:", { maxPayloadBytes: 64 * 1024 }) });
  });
  afterEach(async () => {
    await f.close();
  });

  const failure = async (method: string) => {
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const cfg = run.configuration([agent()]);
    const t0 = Date.now();
    const err = (await cfg
      .call(method, null, { quorum: "all", timeoutMs: 5000 })
      .catch((e) => e)) as IncompleteCallError;
    expect(err).toBeInstanceOf(IncompleteCallError);
    // An answer, not a timeout: well inside the call's deadline.
    expect(Date.now() - t0).toBeLessThan(2000);
    return err.errors.get(agent())!;
  };
  let agent: () => string;

  test("results - BigInt, cycles, oversized and over-nested results and odd throws become typed error replies; the agent lives on", async () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    let deep: unknown = 0;
    for (let i = 0; i < 500; i++) deep = [deep];
    const a = await f.node("odd", {
      bigint: () => 10n,
      cycle: () => circular,
      big: () => "x".repeat(100 * 1024),
      deep: () => deep,
      symbol: () => {
        throw Symbol("nope");
      },
      nasty: () => {
        throw {
          toString() {
            throw new Error("no text for you");
          },
        };
      },
      long: () => {
        throw new Error("e".repeat(1_000_000));
      },
      ok: () => "still here",
    });
    agent = () => a.nodeId!;
    expect((await failure("bigint")).code).toBe("FLEETLINK_E_HANDLER_FAILED");
    expect((await failure("bigint")).message).toMatch(/cannot be encoded as JSON.*BigInt/i);
    expect((await failure("cycle")).message).toMatch(/cannot be encoded as JSON.*circular/i);
    const big = await failure("big");
    expect(big.code).toBe("FLEETLINK_E_PAYLOAD_TOO_LARGE");
    expect(big.message).toMatch(/65536/);
    expect((await failure("deep")).code).toBe("FLEETLINK_E_PAYLOAD_TOO_LARGE");
    expect((await failure("symbol")).message).toMatch(/Symbol\(nope\)/);
    expect((await failure("nasty")).code).toBe("FLEETLINK_E_HANDLER_FAILED");
    const long = await failure("long");
    expect(long.message.length).toBeLessThan(5000);
    expect(long.message).toMatch(/more characters/);

    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const r = await run.configuration([a.nodeId!]).call("ok", null, { quorum: "all", timeoutMs: 5000 });
    expect(r.replies.get(a.nodeId!)).toBe("still here");
    expect(a.state.state).toBe("online");
  });

  test("results - a reply the hub cannot store reaches the coordinator as PAYLOAD_TOO_LARGE, never as silence", async () => {
    // An agent that believes the limit is larger than the hub's (as an old agent would) sends the result anyway.
    const a = await f.node("naive", { big: () => "y".repeat(100 * 1024) });
    (a as unknown as { maxPayloadBytes: number }).maxPayloadBytes = 8 * 1024 * 1024;
    agent = () => a.nodeId!;
    const e = await failure("big");
    expect(e.code).toBe("FLEETLINK_E_PAYLOAD_TOO_LARGE");
    expect(e.message).toMatch(/exceeds the limit of 65536/);
  });
});
