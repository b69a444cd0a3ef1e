// Unregistering a node ends its connection on the replica that served the DELETE at once (close 4001), over the
// stream and over HTTP, instead of at its next heartbeat renewal.
import { afterEach, describe, expect, test } from "vitest";
import type { AgentStatus } from "../../src/node/status.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

let f: TestFleet | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

describe("unregister", () => {
  for (const transport of ["ws", "http"] as const)
    test(`unregister - a ${transport} node's connection here is revoked at once, not at its next heartbeat`, async () => {
      f = await startFleet();
      // A 5 s heartbeat: a renewal would find the unregistered node out only after about that long.
      const agent = await f.node("doomed", { echo: (p) => p }, { heartbeatIntervalMs: 5000, transport });
      const states: AgentStatus["state"][] = [];
      const watching = (async () => {
        for await (const s of agent.status()) {
          states.push(s.state);
          if (s.state === "rejected" || s.state === "stopped") return;
        }
      })();
      const t0 = Date.now();
      const res = await f.hub.app.inject({
        method: "DELETE",
        url: `/v1/nodes/${agent.nodeId}`,
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      expect(res.statusCode).toBe(200);
      await watching;
      // Revoked, redialled, refused NODE_UNREGISTERED: the agent stops, well inside one heartbeat interval.
      expect(states.at(-1)).toBe("rejected");
      expect(Date.now() - t0).toBeLessThan(2500);
    });
});
