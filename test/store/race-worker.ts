// A hub replica stand-in for the race tests: a separate OS process with its own store connection.
// Driven over IPC by race.test.ts; reports what it claimed so the parent can check exactly-once.
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";

type Cmd =
  | { cmd: "claim"; nodeIds: string[]; leaseMs: number; untilMs?: number }
  | { cmd: "claim-once"; nodeIds: string[]; limit: number; leaseMs: number }
  | { cmd: "replies"; runId: string };

const send = (m: unknown) => new Promise<void>((res) => process.send!(m, () => res()));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const claimLoop = async (store: Store, c: Extract<Cmd, { cmd: "claim" }>) => {
  const claimed: { id: string; attempts: number }[] = [];
  let idle = 0;
  while (true) {
    // Mix single-node claims and multi-node claims of random sizes, so every code path races.
    const k = pick([1, 1, 5, 20, c.nodeIds.length]);
    const nodes = k === c.nodeIds.length ? c.nodeIds : Array.from({ length: k }, () => pick(c.nodeIds));
    const got = await store.claimInstructions({
      nodeIds: [...new Set(nodes)],
      limit: pick([1, 8, 32]),
      leaseMs: c.leaseMs,
    });
    if (got.length > 0) {
      idle = 0;
      for (const i of got) claimed.push({ id: i.id, attempts: i.attempts });
      const res = await store.storeReplies(
        got.map((i) => ({
          runId: i.runId,
          nodeId: i.dst,
          replyTo: i.id,
          payload: new TextEncoder().encode(i.id),
        })),
      );
      const bad = res.find((r) => !r.ok);
      if (bad && !bad.ok) throw bad.error;
      continue;
    }
    if (k !== c.nodeIds.length) continue;
    // A claim over every node found nothing: done, unless told to keep going (leases yet to expire).
    if (c.untilMs === undefined || Date.now() >= c.untilMs) {
      if (++idle >= 2) return claimed;
    }
    await sleep(20);
  }
};

const main = async () => {
  const store = await openStore(process.argv[2]!, { busyTimeoutMs: 30_000, poolSize: 4 });
  process.on("message", async (c: Cmd) => {
    try {
      if (c.cmd === "claim") await send({ claimed: await claimLoop(store, c) });
      else if (c.cmd === "claim-once") {
        const got = await store.claimInstructions({ nodeIds: c.nodeIds, limit: c.limit, leaseMs: c.leaseMs });
        await send({ claimed: got.map((i) => ({ id: i.id, attempts: i.attempts })) });
        // Now hang, holding the lease, until the parent kills this process with SIGKILL.
        setInterval(() => {}, 1000);
      } else {
        const ids: { replyTo: string; payload: string }[] = [];
        let empty = 0;
        while (empty < 2) {
          const got = await store.claimReplies({ runId: c.runId, limit: pick([1, 16, 64]) });
          empty = got.length ? 0 : empty + 1;
          for (const r of got) ids.push({ replyTo: r.replyTo, payload: new TextDecoder().decode(r.payload) });
        }
        await send({ replies: ids });
      }
    } catch (e) {
      await send({ error: String((e as Error).stack ?? e) });
    }
  });
  await send({ ready: true });
};

main().catch(async (e) => {
  await send({ error: String((e as Error).stack ?? e) });
  process.exit(1);
});
