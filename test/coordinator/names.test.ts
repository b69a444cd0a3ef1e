// Node names beside ids in what the SDK hands back: call results, stream items, broadcasts, IncompleteCallError.
import { afterEach, describe, expect, test, vi } from "vitest";
import { IncompleteCallError } from "../../src/coordinator/errors.ts";
import { NodeNames } from "../../src/coordinator/names.ts";
import { nodeLabel, shortId } from "../../src/protocol/node-label.ts";
import { startFleet, type TestFleet } from "../helpers/fleet.ts";

let f: TestFleet | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

const twoNodes = async () => {
  f = await startFleet();
  const handlers = (name: string) => ({
    echo: (p: unknown) => ({ from: name, p }),
    fail: () => {
      throw new Error(`${name} refuses`);
    },
    failAlpha: () => {
      if (name === "alpha") throw new Error("alpha refuses");
      return "ok";
    },
  });
  const alpha = await f.node("alpha", handlers("alpha"));
  const beta = await f.node("beta", handlers("beta"));
  return { alpha: alpha.nodeId!, beta: beta.nodeId! };
};

/** How many times `GET /v1/nodes` was asked through this fleet's client. */
const countListings = (fleet: Awaited<ReturnType<TestFleet["fleet"]>>) => {
  const spy = vi.spyOn(fleet.http, "request");
  return () => spy.mock.calls.filter(([m, p]) => m === "GET" && p === "/v1/nodes").length;
};

describe("node names in SDK results", () => {
  test("names - a call's result maps every addressed node id to its name, and its Maps stay keyed by id", async () => {
    const ids = await twoNodes();
    const fleet = await f!.fleet();
    const run = await fleet.createRun();
    const r = await run.configuration(await fleet.nodes()).call("echo", 1, { quorum: "all" });
    expect(r.replies.get(ids.alpha)).toEqual({ from: "alpha", p: 1 });
    expect(r.nodes.get(ids.alpha)).toEqual({ id: ids.alpha, name: "alpha" });
    expect(r.nodes.get(ids.beta)).toEqual({ id: ids.beta, name: "beta" });
  });

  test("names - stream items and broadcast outcomes carry the node's name", async () => {
    const ids = await twoNodes();
    const fleet = await f!.fleet();
    const run = await fleet.createRun();
    const cfg = run.configuration(await fleet.nodes());
    const seen = new Map<string, string | null>();
    for await (const item of cfg.stream("echo", 2)) seen.set(item.node, item.name);
    expect(seen).toEqual(
      new Map([
        [ids.alpha, "alpha"],
        [ids.beta, "beta"],
      ]),
    );
    const b = await cfg.broadcast("fail", null, { ttlMs: 10_000 });
    const done = await b.done;
    expect(done.get(ids.beta)).toMatchObject({ node: ids.beta, name: "beta", ok: false });
  });

  test("names - IncompleteCallError names failed nodes as `name (…last 8 hex)` and lists id, name, code, message", async () => {
    const ids = await twoNodes();
    const fleet = await f!.fleet();
    const run = await fleet.createRun();
    const err = await run
      .configuration(await fleet.nodes())
      .call("fail", null, { quorum: "all" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IncompleteCallError);
    const e = err as IncompleteCallError;
    // quorum "all" fails at the first error: one failed node, whichever answered first.
    const [first] = e.failed;
    const name = first!.id === ids.alpha ? "alpha" : "beta";
    expect(first).toMatchObject({ name, code: "FLEETLINK_E_HANDLER_FAILED" });
    expect(first!.message).toContain(`${name} refuses`);
    expect(e.message).toContain(`${name} (…${first!.id.slice(-8)}): FLEETLINK_E_HANDLER_FAILED`);
    expect(e.message).not.toContain(first!.id);
    expect(e.failedNodes).toEqual([first!.id]);
    // Every addressed node is named, the one that had not answered yet too.
    expect(e.nodes.get(ids.alpha)?.name).toBe("alpha");
    expect(e.nodes.get(ids.beta)?.name).toBe("beta");
    expect(JSON.parse(JSON.stringify(e)).failed).toEqual([{ ...first }]);
  });

  test("names - a configuration of bare ids asks the hub's node listing once, then never again", async () => {
    const ids = await twoNodes();
    const fleet = await f!.fleet();
    const listings = countListings(fleet);
    const run = await fleet.createRun();
    const cfg = run.configuration([ids.alpha, ids.beta]);
    const err = (await cfg.call("failAlpha", null, { quorum: "all" }).catch((e) => e)) as IncompleteCallError;
    expect(err.message).toContain(`alpha (…${ids.alpha.slice(-8)})`);
    expect(err.failed[0]).toMatchObject({ id: ids.alpha, name: "alpha" });
    const r = await cfg.call("echo", 3, { quorum: "all" });
    expect(r.nodes.get(ids.beta)?.name).toBe("beta");
    for await (const item of cfg.stream("echo", 4)) expect(item.name).not.toBeNull();
    expect(listings()).toBe(1);
  });

  test("names - a configuration made from fleet.nodes() costs no listing of its own", async () => {
    await twoNodes();
    const fleet = await f!.fleet();
    const nodes = await fleet.nodes();
    const listings = countListings(fleet);
    const run = await fleet.createRun();
    const r = await run.configuration(nodes).call("echo", 5, { quorum: "all" });
    expect([...r.nodes.values()].map((n) => n.name).sort()).toEqual(["alpha", "beta"]);
    expect(listings()).toBe(0);
  });
});

describe("NodeNames", () => {
  test("names - a failed listing leaves names null, does not fail the caller and is not retried for the same ids", async () => {
    let asked = 0;
    const names = new NodeNames(async () => {
      asked++;
      throw new Error("hub down");
    });
    await names.resolve(["a", "b"]);
    await names.resolve(["a"]);
    expect(names.get("a")).toBeNull();
    expect(asked).toBe(1);
    expect(names.refs(["a"]).get("a")).toEqual({ id: "a", name: null });
  });

  test("names - concurrent resolves of new ids share one listing", async () => {
    let asked = 0;
    const names = new NodeNames(async () => {
      asked++;
      await new Promise((r) => setTimeout(r, 20));
      return [
        { id: "x", name: "ex" },
        { id: "y", name: "why" },
      ];
    });
    await Promise.all([names.resolve(["x"]), names.resolve(["x", "y"]), names.resolve(["y"])]);
    expect(names.get("y")).toBe("why");
    expect(asked).toBeLessThanOrEqual(2);
  });

  test("names - a node is shown as name (…last 8 hex), or its bare id when unnamed", () => {
    const id = "0193a1b2-0000-7000-8000-00000badcafe";
    expect(shortId(id)).toBe("…0badcafe");
    expect(nodeLabel(id, "w1")).toBe("w1 (…0badcafe)");
    expect(nodeLabel(id, null)).toBe(id);
  });
});
