// Agent plug-ins: a feature (checkpoints, say) adds handlers and a lifecycle without agent.ts importing it.
import { afterEach, describe, expect, test } from "vitest";
import { NodeAgent, type NodeAgentOptions } from "../../src/node/agent.ts";
import type { AgentPlugin, AgentPluginHost } from "../../src/node/plugin.ts";
import { isFleetlinkError } from "../../src/protocol/errors.ts";
import { startFleet, type TestFleet } from "../helpers/fleet.ts";

describe("agent plug-ins", () => {
  let f: TestFleet | undefined;
  afterEach(() => f?.close());

  test("plugin - its handlers answer calls; start sees the node's id, close runs when the agent stops", async () => {
    f = await startFleet({ storeUrl: "memory:" });
    const seen: string[] = [];
    let host: AgentPluginHost | undefined;
    const plugin: AgentPlugin = {
      name: "echo",
      handlers: (h) => ({ "echo.id": () => h.nodeId }),
      start: (h) => {
        host = h;
        seen.push(`start ${h.nodeId}`);
      },
      close: async () => {
        seen.push("close");
      },
    };
    const agent = await f.node("p", { own: () => "mine" }, { plugins: [plugin] });
    expect(seen).toEqual([`start ${agent.nodeId}`]);
    expect(host?.nodeId).toBe(agent.nodeId);
    const fleet = await f.fleet();
    const cfg = (await fleet.createRun()).configuration([agent.nodeId!]);
    const r = await cfg.call("echo.id", null, { quorum: "all", timeoutMs: 5000 });
    expect([...r.replies.values()]).toEqual([agent.nodeId]);
    const own = await cfg.call("own", null, { quorum: "all", timeoutMs: 5000 });
    expect([...own.replies.values()]).toEqual(["mine"]);
    await agent.stop({ timeoutMs: 1000 });
    expect(seen).toEqual([`start ${agent.nodeId}`, "close"]);
  });

  const refusal = (o: Partial<NodeAgentOptions> & Record<string, unknown>) => {
    try {
      new NodeAgent({ hubs: ["http://127.0.0.1:1"], name: "x", handlers: { m: () => 1 }, ...o });
    } catch (e) {
      if (isFleetlinkError(e)) return { kind: e.kind, field: e.field, message: e.message };
      throw e;
    }
    return undefined;
  };

  test("plugin - a method the application already handles is refused at construction, naming the plug-in", () => {
    const taken: AgentPlugin = { name: "greedy", handlers: () => ({ m: () => 2 }) };
    expect(refusal({ plugins: [taken] })).toMatchObject({ kind: "INVALID_ARGUMENT", field: "plugins" });
    expect(refusal({ plugins: [taken] })?.message).toContain("greedy handles m");
  });

  test("plugin - the removed checkpoint options are refused with the way to the plug-in, not ignored", () => {
    for (const key of ["state", "checkpointStore", "standby"]) {
      const r = refusal({ [key]: {} });
      expect(r, key).toMatchObject({ kind: "INVALID_ARGUMENT", field: key });
      expect(r?.message).toContain("nodeCheckpoints");
    }
  });
});
