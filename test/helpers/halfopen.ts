// Sequential majority→all calls while nodes move between two replicas over half-open connections: each
// node reaches each replica through its own TCP proxy, and the chaos loop blackholes (half-opens) the proxy
// a node is using now, so the replica sees nothing and the node must move to the other one.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { enrollTokenFor, type Proc, startHubProc, startNodeProc } from "./procs.ts";
import { startProxy } from "./proxy.ts";

/** Node heartbeat interval: online window 2 s, a silent path noticed within 1.5 s (a heartbeat unanswered). */
export const HEARTBEAT_MS = 1000;

export interface HalfOpenResult {
  calls: number;
  failed: number;
  failures: string[];
  moves: number;
  maxCallMs: number;
  p50CallMs: number;
  p99CallMs: number;
}

export const runHalfOpenSoak = async (o: {
  calls: number;
  nodes?: number;
  /** How often one node's current path is blackholed, in ms. (Default: 700) */
  chaosEveryMs?: number;
  db?: string;
  log?: (s: string) => void;
}): Promise<HalfOpenResult> => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-halfopen-"));
  const token = "halfopen-token";
  const procs: Proc[] = [];
  const closers: (() => Promise<void>)[] = [];
  try {
    const db = o.db ?? `sqlite:${join(dir, "hub.db")}`;
    const hubs = [
      await startHubProc(db, token, ["--heartbeat", String(HEARTBEAT_MS)]),
      await startHubProc(db, token, ["--heartbeat", String(HEARTBEAT_MS)]),
    ];
    procs.push(...hubs);
    const n = o.nodes ?? 3;
    const paths: Awaited<ReturnType<typeof startProxy>>[][] = [];
    for (let i = 0; i < n; i++) {
      const mine = await Promise.all(
        hubs.map((h) => startProxy({ host: "127.0.0.1", port: Number(new URL(h.value).port) })),
      );
      for (const p of mine) closers.push(() => p.close());
      paths.push(mine);
      procs.push(
        await startNodeProc(
          mine.map((p) => p.url),
          `half-${i}`,
          enrollTokenFor(token),
          join(dir, `n${i}.json`),
          {},
          HEARTBEAT_MS,
        ),
      );
    }
    const fleet = await Fleet.connect({ hub: hubs.map((h) => h.value), token });
    const run = await fleet.createRun();
    const cfg = run.configuration(await fleet.nodes());
    if (cfg.size !== n) throw new Error(`expected ${n} nodes online, got ${cfg.size}`);
    let stop = false;
    let moves = 0;
    const chaos = (async () => {
      let k = 0;
      while (!stop) {
        await new Promise((r) => setTimeout(r, o.chaosEveryMs ?? 700));
        const mine = paths[k++ % n]!;
        // Half-open the path this node is on, once it has settled there; heal the other. A node still moving
        // (no connection yet, or one only just dialled, its hello maybe not said) is left alone: a second fault
        // before its hello is recorded falls inside the window of its last heartbeat, which no node survives.
        const on = mine.find((p) => p.oldestMs >= HEARTBEAT_MS);
        if (!on) continue;
        for (const p of mine) p.set(p === on ? "blackhole" : "pass");
        moves++;
      }
    })();
    const times: number[] = [];
    const failures: string[] = [];
    for (let i = 0; i < o.calls; i++) {
      const t0 = Date.now();
      try {
        await cfg.call("echo", i, { quorum: "majority", timeoutMs: 10_000 });
        await cfg.call("echo", i, { quorum: "all", timeoutMs: 10_000 });
      } catch (e) {
        failures.push(`call ${i}: ${(e as Error).message}`);
      }
      times.push(Date.now() - t0);
      if (o.log && (i + 1) % 500 === 0) o.log(`${i + 1} calls, ${failures.length} failed, ${moves} moves`);
    }
    stop = true;
    await chaos;
    await fleet.close();
    const sorted = [...times].sort((a, b) => a - b);
    return {
      calls: o.calls,
      failed: failures.length,
      failures: failures.slice(0, 10),
      moves,
      maxCallMs: sorted[sorted.length - 1] ?? 0,
      p50CallMs: sorted[Math.floor(sorted.length / 2)] ?? 0,
      p99CallMs: sorted[Math.floor(sorted.length * 0.99)] ?? 0,
    };
  } finally {
    await Promise.all(procs.map((p) => p.kill("SIGKILL")));
    for (const c of closers) await c();
    rmSync(dir, { recursive: true, force: true });
  }
};
