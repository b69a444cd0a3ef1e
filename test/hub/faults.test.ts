// Faults over real sockets: dropped node sockets, a hub replica killed with SIGKILL, partitions.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { IncompleteCallError } from "../../src/coordinator/errors.ts";
import { Fleet } from "../../src/coordinator/fleet.ts";
import type { NodeAgent } from "../../src/node/agent.ts";
import { openStore } from "../../src/store/open.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";
import { enrollTokenFor, type Proc, startHubProc, startNodeProc } from "../helpers/procs.ts";
import { startProxy } from "../helpers/proxy.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const twoReplicas = async (f: TestFleet) => {
  const db = `sqlite:${join(f.dir, "fleet.db")}`;
  const a = await startHubProc(db, TOKEN, ["--heartbeat", "500"]);
  const b = await startHubProc(db, TOKEN, ["--heartbeat", "500"]);
  cleanups.push(
    () => a.kill(),
    () => b.kill(),
  );
  return [a, b] as const;
};

describe("faults", () => {
  test("socket - a node's socket dropped mid-call: it reconnects (to another replica) and the call completes", async () => {
    const f = await startFleet();
    cleanups.push(() => f.close());
    const [a, b] = await twoReplicas(f);
    const runs = new Map<string, number>();
    const agents = await Promise.all(
      ["x", "y", "z"].map((name) =>
        f.node(
          name,
          {
            work: async (p, ctx) => {
              runs.set(ctx.instructionId, (runs.get(ctx.instructionId) ?? 0) + 1);
              await sleep(300);
              return p;
            },
          },
          { hubs: [a.value, b.value], heartbeatIntervalMs: 500 },
        ),
      ),
    );
    const fleet = await f.fleet([a.value, b.value]);
    const run = await fleet.createRun();
    const cfg = run.configuration(agents.map((x) => x.nodeId!));
    for (let round = 0; round < 5; round++) {
      const call = cfg.call("work", round, { quorum: "all", timeoutMs: 10_000 });
      await sleep(100);
      agents[round % 3]!.dropConnection();
      const res = await call;
      expect([...res.replies.values()]).toEqual([round, round, round]);
    }
    expect(runs.size).toBe(15);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
  }, 60_000);

  test("replica - a hub replica killed with SIGKILL during a stream of calls: every instruction ends in exactly one reply or error", async () => {
    const f = await startFleet();
    cleanups.push(() => f.close());
    const [a, b] = await twoReplicas(f);
    const countFile = join(f.dir, "count.txt");
    writeFileSync(countFile, "");
    const nodes: Proc[] = [];
    for (let i = 0; i < 3; i++) {
      const n = await startNodeProc(
        [a.value, b.value],
        `n${i}`,
        enrollTokenFor(TOKEN),
        join(f.dir, `n${i}.json`),
        {
          COUNT_FILE: countFile,
        },
      );
      nodes.push(n);
      cleanups.push(() => n.kill());
    }
    const fleet = await Fleet.connect({ hub: [a.value, b.value], token: TOKEN });
    cleanups.push(() => fleet.close());
    const run = await fleet.createRun();
    const cfg = run.configuration(nodes.map((n) => n.value));
    const outcomes: ("ok" | "incomplete")[] = [];
    for (let i = 0; i < 120; i++) {
      if (i === 30) await a.kill("SIGKILL");
      try {
        const r = await cfg.call("echo", i, { quorum: "all", timeoutMs: 8000 });
        expect([...r.replies.values()]).toEqual([i, i, i]);
        outcomes.push("ok");
      } catch (e) {
        expect(e).toBeInstanceOf(IncompleteCallError);
        outcomes.push("incomplete");
      }
    }
    // After the failover settles, calls succeed again.
    expect(outcomes.slice(-60).every((o) => o === "ok")).toBe(true);
    // In the store: every instruction ended, each with exactly one reply or error reply.
    const store = await openStore(`sqlite:${join(f.dir, "fleet.db")}`);
    cleanups.push(() => store.close());
    const deadline = Date.now() + 15_000;
    while ((await store.stats()).instructions.pending + (await store.stats()).instructions.leased > 0) {
      if (Date.now() > deadline) throw new Error("instructions still open 15 s after the calls");
      await sleep(200);
    }
    const stats = await store.stats();
    expect(stats.replies.pending + stats.replies.claimed).toBe(stats.instructions.done);
    // No node ran a handler twice for the same instruction.
    const ran = readFileSync(countFile, "utf8").trim().split("\n");
    expect(new Set(ran).size).toBe(ran.length);
  }, 120_000);

  test("cancel - aborting a call withdraws its undelivered instruction; a late reply never reaches a later call", async () => {
    const f = await startFleet({ maxInflight: 1 });
    cleanups.push(() => f.close());
    const ran: string[] = [];
    const node = await f.node("solo", {
      nap: async (p) => {
        ran.push(`nap:${p}`);
        await sleep(p as number);
        return p;
      },
      echo: (p) => {
        ran.push(`echo:${p}`);
        return p;
      },
    });
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const cfg = run.configuration([node.nodeId!]);
    // A call that times out: its delivered instruction is withdrawn and the node told to stop; the handler
    // ignores its signal and its late result is dropped by the node.
    const late = await cfg.call("nap", 600, { quorum: "all", timeoutMs: 150 }).catch((e) => e);
    expect(late).toBeInstanceOf(IncompleteCallError);
    expect(late.errors.get(node.nodeId).code).toBe("FLEETLINK_E_MESSAGE_EXPIRED");
    // While the node is busy with a live call (max one in flight), this call's instruction waits undelivered;
    // abort it.
    const busy = cfg.call("nap", 400, { quorum: "all", timeoutMs: 5000 });
    await sleep(100);
    const ac = new AbortController();
    const cancelled = cfg.call("echo", "withdrawn", { quorum: "all", timeoutMs: 5000, signal: ac.signal });
    await sleep(100);
    ac.abort("changed my mind");
    const err = await cancelled.catch((e) => e);
    expect(err).toBeInstanceOf(IncompleteCallError);
    expect(err.message).toMatch(/cancelled/);
    expect((await busy).replies.get(node.nodeId!)).toBe(400);
    // The next call gets its own reply, not the late one.
    const next = await cfg.call("echo", "mine", { quorum: "all", timeoutMs: 5000 });
    expect(next.replies.get(node.nodeId!)).toBe("mine");
    await sleep(200);
    expect(ran).toEqual(["nap:600", "nap:400", "echo:mine"]);
  }, 30_000);

  test("partition - broadcasts during drops, blackholes and delays reach every node exactly once after healing", async () => {
    const f = await startFleet({ pingIntervalMs: 300 });
    cleanups.push(() => f.close());
    const hub = new URL(f.url);
    const proxies = await Promise.all(
      [0, 1, 2, 3].map(() => startProxy({ host: hub.hostname, port: Number(hub.port) })),
    );
    cleanups.push(...proxies.map((p) => () => p.close()));
    const got = proxies.map(() => new Map<number, number>());
    const agents: NodeAgent[] = [];
    for (const [i, p] of proxies.entries()) {
      agents.push(
        await f.node(
          `p${i}`,
          {
            value: (v) => {
              got[i]!.set(v as number, (got[i]!.get(v as number) ?? 0) + 1);
              return "ok";
            },
          },
          { hubs: [p.url], heartbeatIntervalMs: 300 },
        ),
      );
    }
    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const cfg = run.configuration(agents.map((a) => a.nodeId!));
    const broadcasts = [];
    for (let v = 0; v < 30; v++) {
      if (v === 5) {
        proxies[1]!.set("pass", { delayMs: 80 });
        proxies[2]!.set("blackhole");
        proxies[3]!.set("drop");
      }
      if (v === 20) for (const p of proxies) p.set("pass");
      broadcasts.push(await cfg.broadcast("value", v, { ttlMs: 60_000 }));
      await sleep(100);
    }
    const results = await Promise.all(broadcasts.map((b) => b.done));
    for (const r of results) expect([...r.values()].every((x) => x.ok)).toBe(true);
    for (const g of got) {
      expect([...g.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: 30 }, (_, i) => i));
      expect([...g.values()].every((n) => n === 1)).toBe(true);
    }
  }, 90_000);
});
