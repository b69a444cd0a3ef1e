// How soon a running handler learns that its call was withdrawn: 100 calls to a 10-second handler that waits on
// ctx.signal, each withdrawn (POST …/instructions/withdraw) after a short random delay once the handler runs;
// latency = the handler's signal abort − the withdraw request sent. The withdraw goes through the node's own
// replica and, separately, through a second replica over the same store (its change feed wakes the node's
// replica). Baseline, measured in the same run: the withdraw request's own round trip.
// Run: npm run bench:cancel
// Environment: CANCEL_CALLS (default 100), FLEETLINK_BENCH_POSTGRES_URL (or FLEETLINK_TEST_POSTGRES_URL;
// default postgres://root@127.0.0.1:5432/test; PostgreSQL is skipped when unreachable).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { Fleet } from "../src/coordinator/fleet.ts";
import { createHub, type Hub } from "../src/hub/server.ts";
import { NodeAgent } from "../src/node/agent.ts";
import { openStore } from "../src/store/open.ts";
import type { Store } from "../src/store/store.ts";

const CALLS = Number(process.env.CANCEL_CALLS ?? 100);
/** Each config gives up after this long, so the benchmark is bounded whatever happens. */
const CONFIG_BOUND_MS = 60_000;
const TOKEN = "bench-cancel";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
const ms = (x: number) => x.toFixed(1);

interface Row {
  backend: string;
  withdrawVia: string;
  calls: number;
  abortP50: number;
  abortP99: number;
  abortMax: number;
  rttP50: number;
}

const measure = async (backend: string, url: string): Promise<Row[]> => {
  const stores: Store[] = [await openStore(url), await openStore(url)];
  const hubs: Hub[] = stores.map((store) =>
    createHub({ store, token: TOKEN, enrollToken: `${TOKEN}-enroll` }),
  );
  const urls = await Promise.all(hubs.map((h) => h.listen()));
  let started: ((id: string) => void) | undefined;
  let aborted: ((at: number) => void) | undefined;
  const agent = new NodeAgent({
    hubs: [urls[0]!],
    name: "bench-cancel",
    enrollToken: `${TOKEN}-enroll`,
    handlers: {
      // A 10-second handler that stops when told.
      wait: (_p, ctx) =>
        new Promise((resolve) => {
          const t = setTimeout(() => resolve("done"), 10_000);
          ctx.signal.addEventListener(
            "abort",
            () => {
              aborted?.(performance.now());
              clearTimeout(t);
              resolve("aborted");
            },
            { once: true },
          );
          started?.(ctx.instructionId);
        }),
    },
  });
  await agent.start();
  const fleet = await Fleet.connect({ hub: urls[0]!, token: TOKEN });
  const rows: Row[] = [];
  try {
    const run = await fleet.createRun();
    for (const [via, hub] of [
      ["node's replica", urls[0]!],
      ["other replica", urls[1]!],
    ] as const) {
      const lat: number[] = [];
      const rtt: number[] = [];
      const until = Date.now() + CONFIG_BOUND_MS;
      for (let i = 0; i < CALLS && Date.now() < until; i++) {
        const running = new Promise<string>((r) => {
          started = r;
        });
        const [w] = await run.push([agent.nodeId!], "wait", i, { ttlMs: 60_000 });
        w!.result.catch(() => undefined);
        const id = await running;
        await sleep(Math.random() * 50);
        const stopped = new Promise<number>((r) => {
          aborted = r;
        });
        const t0 = performance.now();
        const res = await fetch(`${hub}/v1/runs/${run.id}/instructions/withdraw`, {
          method: "POST",
          headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
          body: JSON.stringify({ ids: [id] }),
        });
        rtt.push(performance.now() - t0);
        if (res.status !== 200) throw new Error(`withdraw answered ${res.status}: ${await res.text()}`);
        const at = await Promise.race([stopped, sleep(5000).then(() => Number.NaN)]);
        if (Number.isNaN(at)) throw new Error(`handler of ${id} not aborted within 5 s of its withdraw`);
        lat.push(at - t0);
      }
      rows.push({
        backend,
        withdrawVia: via,
        calls: lat.length,
        abortP50: pct(lat, 0.5),
        abortP99: pct(lat, 0.99),
        abortMax: Math.max(...lat),
        rttP50: pct(rtt, 0.5),
      });
    }
  } finally {
    await fleet.close();
    await agent.stop({ timeoutMs: 1000 });
    for (const h of hubs) await h.close();
    for (const s of stores) await s.close();
  }
  return rows;
};

console.log(
  `bench:cancel — ${CALLS} calls per config to a 10 s handler waiting on ctx.signal, each withdrawn 0–50 ms after ` +
    "it starts; abort = signal abort − withdraw request sent; baseline: the withdraw request's round trip; two " +
    "hub replicas over one store, the node on the first; default hub options (1 s safety poll)",
);
const rows: Row[] = [];
const dir = mkdtempSync(join(tmpdir(), "fleetlink-bench-cancel-"));
try {
  rows.push(...(await measure("sqlite", `sqlite:${join(dir, "fleet.db")}`)));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const pgUrl =
  process.env.FLEETLINK_BENCH_POSTGRES_URL ??
  process.env.FLEETLINK_TEST_POSTGRES_URL ??
  "postgres://root@127.0.0.1:5432/test";
const schema = `bench_cancel_${Math.random().toString(36).slice(2, 8)}`;
try {
  const u = new URL(pgUrl);
  u.searchParams.set("schema", schema);
  rows.push(...(await measure("postgres", u.toString())));
  const c = new pg.Client({ connectionString: pgUrl });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await c.end();
} catch (e) {
  console.log(`postgres skipped: ${(e as Error).message}`);
}
console.log(
  "\n| backend | withdraw via | calls | abort p50 (ms) | abort p99 (ms) | abort max (ms) | withdraw RTT p50 (ms) | p99 / RTT |",
);
console.log("|---|---|---|---|---|---|---|---|");
for (const r of rows)
  console.log(
    `| ${r.backend} | ${r.withdrawVia} | ${r.calls} | ${ms(r.abortP50)} | ${ms(r.abortP99)} | ${ms(r.abortMax)} | ${ms(r.rttP50)} | ${(r.abortP99 / r.rttP50).toFixed(1)}× |`,
  );
process.exit(0);
