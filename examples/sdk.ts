// The SDK in one file: a hub on a SQLite file, two node agents, a coordinator making quorum calls.
// Run: npx node examples/sdk.ts   (from a published install, import from "fleetlink" instead of "../src/index.ts")
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHub, Fleet, IncompleteCallError, NodeAgent, openStore } from "../src/index.ts";

const store = await openStore(`sqlite:${join(mkdtempSync(join(tmpdir(), "fleetlink-")), "fleet.db")}`);
// Two roles, two secrets: the admin token drives the fleet, the enrollment token only enrolls nodes.
const hub = createHub({ store, token: "admin-secret", enrollToken: "enroll-secret" });
const url = await hub.listen({ port: 0 });

const agents = await Promise.all(
  ["alpha", "beta"].map(async (name) => {
    const agent = new NodeAgent({
      hubs: [url],
      name,
      enrollToken: "enroll-secret",
      handlers: {
        add: (p) => (p as { a: number; b: number }).a + (p as { a: number; b: number }).b,
        fail: () => {
          throw new Error(`${name} refuses`);
        },
      },
    });
    await agent.start();
    return agent;
  }),
);

const fleet = await Fleet.connect({ hub: url, token: "admin-secret" });
const run = await fleet.createRun();
const cfg = run.configuration(await fleet.nodes());

const sum = await cfg.call("add", { a: 2, b: 3 }, { quorum: "all", timeoutMs: 5000 });
console.log("add →", [...sum.replies.values()]);

for await (const item of cfg.stream("add", { a: 1, b: 1 }))
  console.log("stream →", item.ok ? item.value : item.error.code);

try {
  await cfg.call("fail", null, { quorum: "majority" });
} catch (e) {
  // A majority of 2 is 2: the first refusal already fails the call (a quorum that can no longer be met).
  if (e instanceof IncompleteCallError) console.log("fail →", e.code, "failed nodes:", e.failedNodes.length);
}

const b = await cfg.broadcast("add", { a: 10, b: 0 }, { ttlMs: 60_000 });
console.log(
  "broadcast →",
  [...(await b.done).values()].map((r) => (r.ok ? r.value : r.error.code)),
);

await fleet.close();
await Promise.all(agents.map((a) => a.stop()));
await hub.close();
await store.close();
