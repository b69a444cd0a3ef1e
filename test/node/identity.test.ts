// Identity safety: an identity file belongs to one node name, and one agent at a time.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { NodeAgent, type NodeAgentOptions } from "../../src/node/agent.ts";
import type { AgentStatus } from "../../src/node/status.ts";
import { FleetlinkError } from "../../src/protocol/errors.ts";
import { startBlackhole } from "../helpers/blackhole.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { ENROLL_TOKEN, startFleet } from "../helpers/fleet.ts";

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => {});
});

const setup = async () => {
  const f = await startFleet();
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-identity-"));
  cleanups.push(
    () => f.close(),
    () => rmSync(dir, { recursive: true, force: true }),
  );
  return { f, dir };
};

const agentOn = (o: Omit<NodeAgentOptions, "handlers">) => {
  const a = new NodeAgent({ heartbeatIntervalMs: 300, ...o, handlers: {} });
  cleanups.push(() => a.stop({ timeoutMs: 200 }));
  return a;
};

const watch = (a: NodeAgent) => {
  const seen: AgentStatus[] = [];
  void (async () => {
    for await (const s of a.status()) seen.push(s);
  })();
  return seen;
};

describe("identity and name", () => {
  test("identity - enrolling keeps the node's name in the identity file", async () => {
    const { f, dir } = await setup();
    const identityFile = join(dir, "alpha.json");
    const a = agentOn({ hubs: [f.url], name: "alpha", enrollToken: ENROLL_TOKEN, identityFile });
    await a.start();
    expect(JSON.parse(readFileSync(identityFile, "utf8"))).toMatchObject({ nodeId: a.nodeId, name: "alpha" });
  });

  test("identity - an identity file of another name is refused before connecting, naming both names and the fix", async () => {
    const { f, dir } = await setup();
    const identityFile = join(dir, "alpha.json");
    const a = agentOn({ hubs: [f.url], name: "alpha", enrollToken: ENROLL_TOKEN, identityFile });
    await a.start();
    await a.stop({ timeoutMs: 200 });
    let err: unknown;
    try {
      new NodeAgent({ hubs: [f.url], name: "beta", identityFile, handlers: {} });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FleetlinkError);
    const e = err as FleetlinkError;
    expect(e.code).toBe("FLEETLINK_E_INVALID_ARGUMENT");
    expect(e.field).toBe("name");
    expect(e.message).toContain(`identity file ${identityFile} is node "alpha" (${a.nodeId}), not "beta"`);
    expect(e.message).toContain("--name alpha");
    expect(e.message).toContain("--identity .fleetlink/node-beta.json");
    expect(e.message).toContain(`fleetlink nodes unregister ${a.nodeId}`);
    // The same name is fine.
    expect(() => new NodeAgent({ hubs: [f.url], name: "alpha", identityFile, handlers: {} })).not.toThrow();
  });

  test("identity - an older identity file without a name: the hub's hello names the node, and an agent of another name stops", async () => {
    const { f, dir } = await setup();
    const identityFile = join(dir, "old.json");
    const a = agentOn({ hubs: [f.url], name: "alpha", enrollToken: ENROLL_TOKEN, identityFile });
    await a.start();
    await a.stop({ timeoutMs: 200 });
    const { nodeId, credential } = JSON.parse(readFileSync(identityFile, "utf8"));
    writeFileSync(identityFile, JSON.stringify({ nodeId, credential }));
    const b = agentOn({ hubs: [f.url], name: "beta", identityFile });
    const seen = watch(b);
    const e = await rejectsWith(b.start(), "INVALID_ARGUMENT");
    expect(e.message).toMatch(/is node "alpha" .*not "beta".*--name alpha/);
    expect(seen.filter((s) => s.state === "online")).toHaveLength(0);
    expect(seen.at(-1)).toMatchObject({ state: "rejected", code: "FLEETLINK_E_INVALID_ARGUMENT" });
    // The node kept its name on the hub, and is not left looking online: the refused agent said leave.
    const fleet = await f.fleet();
    const node = (await fleet.nodes({ all: true })).find((n) => n.id === nodeId);
    expect(node?.name).toBe("alpha");
    expect(node?.status).toBe("offline");
  });
});

describe("two agents on one identity", () => {
  test("identity - the newcomer gives up after maxConflicts replacements in a row (CONFLICT); the settled agent stays online", async () => {
    const { f, dir } = await setup();
    const identityFile = join(dir, "twin.json");
    // Settled after 6 s online: longer than any stream lives in the conflict below (2 s, then 4 s back-offs).
    const o = { hubs: [f.url], name: "twin", identityFile, maxConflicts: 2, conflictSettleMs: 6000 };
    const first = agentOn({ ...o, enrollToken: ENROLL_TOKEN });
    await first.start();
    const firstSeen = watch(first);
    await new Promise((r) => setTimeout(r, 6200));
    const second = agentOn(o);
    const secondSeen = watch(second);
    const t0 = Date.now();
    await second.start();
    await expect.poll(() => second.state.state, { timeout: 20_000, interval: 100 }).toBe("rejected");
    const rejected = second.state as Extract<AgentStatus, { state: "rejected" }>;
    expect(rejected.code).toBe("FLEETLINK_E_CONFLICT");
    expect(rejected.reason).toMatch(/another process is connected as node .*replaced 2 times in a row/);
    expect(rejected.reason).toContain(identityFile);
    // Bounded: two replacements with back-offs of about 2 s and 4 s, not forever.
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(secondSeen.filter((s) => s.state === "online").length).toBe(2);
    // The first agent was replaced too, but only once counted: it is online again and did not give up.
    await expect.poll(() => first.state.state, { timeout: 10_000, interval: 100 }).toBe("online");
    expect(firstSeen.some((s) => s.state === "rejected")).toBe(false);
    expect(firstSeen.some((s) => s.state === "offline" && /replaced 1 of 2 times/.test(s.reason))).toBe(true);
  }, 40_000);

  test("identity - reconnecting after network blips, the hub replacing the stream we left behind, is never a conflict", async () => {
    const { f, dir } = await setup();
    const target = { host: "127.0.0.1", port: Number(new URL(f.url).port) };
    const paths = [await startBlackhole(target), await startBlackhole(target)];
    for (const p of paths) cleanups.push(() => p.close());
    const a = agentOn({
      hubs: paths.map((p) => p.url),
      name: "blippy",
      enrollToken: ENROLL_TOKEN,
      identityFile: join(dir, "blippy.json"),
      // A single counted conflict would stop it.
      maxConflicts: 1,
    });
    await a.start();
    const seen = watch(a);
    for (let i = 0; i < 3; i++) {
      // Cut the path in use: the hub still holds that stream (no FIN crosses a cut) when the agent comes back
      // over the other path, so it closes it as replaced; the agent has left it by then.
      const now = (a.state as { hub?: string }).hub;
      const cut = paths.find((p) => p.url === now)!;
      cut.cut();
      await expect
        .poll(() => a.state.state === "online" && (a.state as { hub: string }).hub !== now, { timeout: 5000 })
        .toBe(true);
      cut.heal();
    }
    await new Promise((r) => setTimeout(r, 500));
    expect(a.state.state).toBe("online");
    expect(seen.some((s) => s.state === "rejected")).toBe(false);
    expect(seen.filter((s) => s.state === "online").length).toBeGreaterThanOrEqual(3);
  }, 30_000);
});
