import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { IncompleteCallError } from "../../src/coordinator/errors.ts";
import { startFleet, type TestFleet } from "../helpers/fleet.ts";

describe("quorum calls through one hub", () => {
  let f: TestFleet;
  beforeEach(async () => {
    f = await startFleet();
  });
  afterEach(async () => {
    await f.close();
  });

  test("call - majority and all resolve with every node's reply", async () => {
    const agents = await Promise.all(
      ["a", "b", "c"].map((n) => f.node(n, { echo: (p, ctx) => ({ p, node: ctx.nodeId }) })),
    );
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const cfg = run.configuration(agents.map((a) => a.nodeId!));
    const all = await cfg.call("echo", { x: 1 }, { quorum: "all", timeoutMs: 5000 });
    expect(all.replies.size).toBe(3);
    for (const a of agents) expect(all.replies.get(a.nodeId!)).toEqual({ p: { x: 1 }, node: a.nodeId });
    const maj = await cfg.call("echo", 2, { quorum: "majority", timeoutMs: 5000 });
    expect(maj.replies.size).toBeGreaterThanOrEqual(2);
  });

  test("call - a failing handler is reported per node; an impossible quorum rejects with IncompleteCallError", async () => {
    const ok = await f.node("ok", { work: () => "fine" });
    const bad = await f.node("bad", {
      work: () => {
        throw new Error("boom");
      },
    });
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const cfg = run.configuration([ok.nodeId!, bad.nodeId!]);
    const first = await cfg.call("work", null, { quorum: "first", timeoutMs: 5000 });
    expect(first.replies.get(ok.nodeId!)).toBe("fine");
    const err = await cfg.call("work", null, { quorum: "all", timeoutMs: 5000 }).catch((e) => e);
    expect(err).toBeInstanceOf(IncompleteCallError);
    expect(err.failedNodes).toEqual([bad.nodeId]);
    expect(err.errors.get(bad.nodeId).message).toBe("boom");
    expect(err.replies.get(ok.nodeId)).toBe("fine");
  });
});
