// npm run soak:chaos [-- --postgres]: two hub replica processes on one store, real node processes and two
// coordinators making quorum calls, while a chaos loop throws hostile peers at the replicas (garbage frames,
// WebSocket protocol violations, reset upgrades, oversized frames and replies, slow readers, and on PostgreSQL
// terminated backends). Nothing of that may crash a replica, lose a reply or run a handler twice.
// Bounded by DURATION_S (default 600). Exits non-zero on any crash, lost reply or duplicate.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { isDeepStrictEqual } from "node:util";
import pg from "pg";
import { IncompleteCallError } from "../src/coordinator/errors.ts";
import { Fleet } from "../src/coordinator/fleet.ts";
import type { Quorum } from "../src/coordinator/quorum.ts";
import type { Configuration } from "../src/coordinator/run.ts";
import { newId } from "../src/protocol/ids.ts";
import { type Proc, startCli, startHubProc } from "../test/helpers/procs.ts";
import { Op, openRaw, type RawWs, requestThenReset, violations } from "../test/helpers/rawws.ts";

const MiB = 1024 * 1024;
const DURATION_S = Number(process.env.DURATION_S ?? 600);
const NODES = Number(process.env.NODES ?? 5);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 4);
const USE_PG = process.argv.includes("--postgres");
const PG_URL = process.env.FLEETLINK_TEST_POSTGRES_URL;
const MAX_PAYLOAD = 4 * MiB; // the hub's default payload limit
const LEASE_MS = 10_000;
const MAX_BUFFERED = "16MiB";
const SLOW_PAYLOAD = 3.5 * MiB;
const SLOW_ITEMS = 6; // 21 MiB queued for a reader that never reads: beyond --max-buffered
const CALL_TIMEOUT_MS = 15_000;
const HANDLERS = join(import.meta.dirname, "soak-chaos-handlers.ts");
const ADMIN = `soak-admin-${newId()}`;
const ENROLL = `soak-enroll-${newId()}`;

if (USE_PG && !PG_URL) {
  console.error("--postgres needs FLEETLINK_TEST_POSTGRES_URL");
  process.exit(2);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
const bump = (m: Map<string, number>, k: string, n = 1) => m.set(k, (m.get(k) ?? 0) + n);

const dir = mkdtempSync(join(tmpdir(), "fleetlink-soak-"));
const schema = `soak_${newId().replace(/-/g, "").slice(-12)}`;
const dbUrl = (app: string): string => {
  if (!USE_PG) return `sqlite:${join(dir, "hub.db")}`;
  const u = new URL(PG_URL!);
  u.searchParams.set("schema", schema);
  u.searchParams.set("application_name", app); // so the chaos loop can find (and kill) this replica's backends
  return u.toString();
};

console.log("soak:chaos parameters");
console.table({
  duration_s: DURATION_S,
  store: USE_PG ? `postgres (schema ${schema})` : "sqlite (one file, two replicas)",
  replicas: 2,
  nodes: NODES,
  concurrent_callers: CONCURRENCY,
  call_timeout_ms: CALL_TIMEOUT_MS,
  lease_ms: LEASE_MS,
  max_payload: `${MAX_PAYLOAD / MiB} MiB`,
  max_buffered: MAX_BUFFERED,
  chaos: process.env.CHAOS ?? "all",
});

// ---- hub replicas: started, watched for exits we did not cause, restarted on the same port, RSS sampled
interface Replica {
  name: string;
  proc?: Proc;
  url: string;
  port: number;
  stopping: boolean;
  crashes: number;
  crashLogs: string[];
  peakRssKb: number;
  stderrBytes: number;
}
const replicas: Replica[] = ["hub-a", "hub-b"].map((name) => ({
  name,
  url: "",
  port: 0,
  stopping: false,
  crashes: 0,
  crashLogs: [],
  peakRssKb: 0,
  stderrBytes: 0,
}));
/** This soak's PostgreSQL connections of one replica, as pg_stat_activity shows them. */
const appName = (r: Replica) => `${schema}-${r.name}`;
const startReplica = async (r: Replica): Promise<void> => {
  const proc = await startHubProc(dbUrl(appName(r)), ADMIN, [
    "--enroll-token",
    ENROLL,
    "--log-level",
    "warn",
    "--lease",
    String(LEASE_MS),
    "--max-buffered",
    MAX_BUFFERED,
    "--heartbeat",
    "1000",
    ...(r.port ? ["--port", String(r.port)] : []),
  ]);
  r.proc = proc;
  r.url = proc.value;
  r.port = Number(new URL(r.url).port);
  proc.child.stderr!.on("data", (d: Buffer) => {
    r.stderrBytes += d.length;
  });
  proc.child.once("exit", (code, sig) => {
    if (r.stopping) return;
    r.crashes++;
    r.crashLogs.push(`${r.name} exited (${code ?? sig}):\n${proc.output().slice(-3000)}`);
    console.error(`!! ${r.name} CRASHED (${code ?? sig}); restarting on port ${r.port}`);
    void (async () => {
      for (let i = 0; i < 10 && !r.stopping; i++) {
        try {
          await startReplica(r);
          return;
        } catch {
          await sleep(500);
        }
      }
    })();
  });
};
const rssTimer = setInterval(() => {
  for (const r of replicas) {
    const pid = r.proc?.child.pid;
    if (!pid) continue;
    try {
      const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
      r.peakRssKb = Math.max(r.peakRssKb, kb);
    } catch {
      // exited between the check and the read
    }
  }
}, 250);

const nodes: Proc[] = [];
const fleets: Fleet[] = [];
let pgClient: pg.Client | undefined;
const cleanup = async () => {
  clearInterval(rssTimer);
  for (const f of fleets) await f.close().catch(() => {});
  await Promise.all(nodes.map((n) => n.kill()));
  for (const r of replicas) r.stopping = true;
  await Promise.all(replicas.map((r) => r.proc?.kill()));
  if (pgClient) {
    await pgClient.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await pgClient.end().catch(() => {});
  }
  rmSync(dir, { recursive: true, force: true });
};
process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));

// ---- workload accounting
const calls = { made: 0, ok: 0, wrongReplies: 0, failedByCode: new Map<string, number>() };
/** When (s into the workload) each failure code was first and last seen, to match failures to chaos. */
const failedWhen = new Map<string, [number, number]>();
let workloadStart = Date.now();
const oversized = { made: 0, payloadTooLarge: 0, other: new Map<string, number>() };
const chaos = new Map<string, number>();
const chaosOdd = new Map<string, number>();
const failureCodes = (e: unknown): string => {
  if (e instanceof IncompleteCallError)
    return (
      [...new Set([...e.errors.values()].map((x) => x.code.replace("FLEETLINK_E_", "")))].sort().join("+") ||
      "INCOMPLETE"
    );
  return (e as { code?: string }).code?.replace("FLEETLINK_E_", "") ?? (e as Error).name;
};

const call = async (cfg: Configuration, payload: unknown, quorum: Quorum) => {
  calls.made++;
  try {
    const r = await cfg.call("echo", payload, { quorum, timeoutMs: CALL_TIMEOUT_MS });
    for (const v of r.replies.values()) if (!isDeepStrictEqual(v, payload)) calls.wrongReplies++;
    calls.ok++;
  } catch (e) {
    if (e instanceof IncompleteCallError)
      for (const v of e.replies.values()) if (!isDeepStrictEqual(v, payload)) calls.wrongReplies++;
    const code = failureCodes(e);
    bump(calls.failedByCode, code);
    const t = Math.round((Date.now() - workloadStart) / 1000);
    failedWhen.set(code, [failedWhen.get(code)?.[0] ?? t, t]);
  }
};

let running = true;
let exitCode = 0;
try {
  for (const r of replicas) await startReplica(r);
  const hubList = replicas.map((r) => r.url);
  if (USE_PG) {
    pgClient = new pg.Client({ connectionString: PG_URL });
    await pgClient.connect();
  }

  for (let i = 0; i < NODES; i++)
    nodes.push(
      await startCli(
        [
          "node",
          "--hub",
          (i % 2 ? [...hubList].reverse() : hubList).join(","),
          "--name",
          `soak-${i}`,
          "--handlers",
          HANDLERS,
          "--token",
          ENROLL,
          "--identity",
          join(dir, `n${i}.json`),
          "--heartbeat",
          "500",
        ],
        /online as (\S+)/,
        { COUNT_FILE: join(dir, `count-${i}.txt`) },
      ),
    );
  const nodeIds = nodes.map((n) => n.value);

  // Two coordinators, each preferring another replica.
  const fleetA = await Fleet.connect({ hub: hubList, token: ADMIN });
  const fleetB = await Fleet.connect({ hub: [...hubList].reverse(), token: ADMIN });
  fleets.push(fleetA, fleetB);
  const runA = await fleetA.createRun();
  const runB = await fleetB.createRun();
  const cfgA = runA.configuration(nodeIds);
  const cfgB = runB.configuration(nodeIds);
  const chaosRun = ((await fleetA.http.request("POST", "/v1/runs")) as { run: { id: string } }).run.id;

  const enroll = async (name: string) => {
    const res = await fetch(`${hubList[0]}/v1/nodes/enroll`, {
      method: "POST",
      headers: { authorization: `Bearer ${ENROLL}`, "content-type": "application/json" },
      body: JSON.stringify({ name }),
    });
    const b = (await res.json()) as { node: { id: string }; credential: string };
    return { id: b.node.id, auth: `${b.node.id}.${b.credential}` };
  };
  const rawNode = await enroll("chaos-raw");
  const slowNode = await enroll("chaos-slow");

  // ---- workload: one sequential caller, CONCURRENCY concurrent callers, and a steady trickle of oversized replies
  workloadStart = Date.now();
  const deadline = workloadStart + DURATION_S * 1000;
  const sequential = (async () => {
    for (let i = 0; running; i++) await call(cfgA, { k: "seq", i, nonce: newId() }, "all");
  })();
  const quorums = ["majority", { threshold: 2 }, "first", "all"] as const;
  const concurrent = Array.from({ length: CONCURRENCY }, (_, w) =>
    (async () => {
      for (let i = 0; running; i++)
        await call(cfgB, { k: "conc", w, i, nonce: newId() }, quorums[(w + i) % 4]!);
    })(),
  );
  const big = (async () => {
    for (let i = 0; running; i++) {
      await sleep(3000);
      oversized.made++;
      try {
        await runA.configuration([nodeIds[i % nodeIds.length]!]).call("big", MAX_PAYLOAD + 1024, {
          quorum: "all",
          timeoutMs: CALL_TIMEOUT_MS,
        });
        bump(oversized.other, "ok (should have been refused)");
      } catch (e) {
        const code = failureCodes(e);
        if (code === "PAYLOAD_TOO_LARGE") oversized.payloadTooLarge++;
        else bump(oversized.other, code);
      }
    }
  })();

  // ---- chaos
  const session = async (
    r: Replica,
    auth: string,
    path = "/v1/nodes/stream",
    hello = true,
  ): Promise<RawWs> => {
    const ws = await openRaw(r.url, path, auth);
    if (hello) {
      const id = newId();
      ws.send({
        opcode: Op.text,
        payload: JSON.stringify({ t: "req", id, m: "hello", b: { inflight: [] } }),
      });
      await ws.next((f) => f.opcode === Op.close || (f.opcode === Op.text && f.payload.includes(id)), 3000);
    }
    return ws;
  };
  const garbageFrames = () => [
    "not json",
    "[1,2,3]",
    JSON.stringify({ t: "zzz", id: newId() }),
    JSON.stringify({ t: "err", e: { code: "FLEETLINK_E_X", message: "m".repeat(256 * 1024) } }),
    JSON.stringify({ t: "req", id: newId(), m: "reply", b: { id: 1, replyTo: [], runId: {} } }),
    JSON.stringify({ t: "req", id: newId(), m: "nope", b: null }),
    JSON.stringify({ t: "res", id: newId(), b: "unasked" }),
    "\u0000",
  ];
  let slowActive: Promise<void> | undefined;
  const slowReader = async (r: Replica) => {
    try {
      const ws = await session(r, slowNode.auth);
      ws.socket.pause(); // from now on this peer reads nothing: pings, instructions and close frames pile up
      const payload = "s".repeat(SLOW_PAYLOAD);
      for (let i = 0; i < SLOW_ITEMS; i += 3)
        await fleetA.http.request("POST", `/v1/runs/${chaosRun}/instructions`, {
          items: Array.from({ length: 3 }, () => ({
            dst: slowNode.id,
            method: "echo",
            payload,
            ttlMs: 20_000,
          })),
        });
      // A paused socket does not notice its end: look after long enough for the slow-consumer cutoff or two
      // missed pongs (ping interval 10 s).
      await sleep(22_000);
      ws.socket.resume();
      const end = await ws.ended(5000);
      bump(
        chaosOdd,
        end.tcpClosed ? `slow reader cut off (close ${end.code})` : "slow reader NOT cut off in 27 s",
      );
      ws.destroy();
    } finally {
      slowActive = undefined;
    }
  };
  const resetCreds = [
    undefined,
    "Bearer garbage",
    `Bearer ${rawNode.id}.wrong`,
    `Bearer ${newId()}.x`,
    `Bearer ${rawNode.auth}`,
    `Bearer ${ADMIN}`,
  ];
  const actions: Record<string, (r: Replica) => Promise<void>> = {
    "garbage frames": async (r) => {
      const ws = await session(r, rawNode.auth);
      for (const g of garbageFrames()) ws.send({ opcode: Op.text, payload: g });
      await ws.ended(500);
      ws.destroy();
    },
    "protocol violation (node stream)": async (r) => {
      const v = pick(violations);
      const ws = await session(r, rawNode.auth);
      for (const f of v.frames) ws.send(f);
      const end = await ws.ended(2000);
      if (!end.tcpClosed || end.code !== v.code)
        bump(chaosOdd, `${v.name}: got ${end.code}, connection ${end.tcpClosed ? "closed" : "open"}`);
      ws.destroy();
    },
    "protocol violation (run stream)": async (r) => {
      const v = pick(violations);
      const ws = await session(r, ADMIN, `/v1/runs/${chaosRun}/stream`, false);
      for (const f of v.frames) ws.send(f);
      const end = await ws.ended(2000);
      if (!end.tcpClosed || end.code !== v.code) bump(chaosOdd, `run ${v.name}: got ${end.code}`);
      ws.destroy();
    },
    "oversized reply frame (5 MiB)": async (r) => {
      const ws = await session(r, rawNode.auth);
      const b = { id: newId(), runId: chaosRun, replyTo: newId(), payload: "x".repeat(5 * MiB) };
      ws.send({ opcode: Op.text, payload: JSON.stringify({ t: "req", id: newId(), m: "reply", b }) });
      const end = await ws.ended(3000);
      if (end.code !== 1009) bump(chaosOdd, `oversized frame: got ${end.code}`);
      ws.destroy();
    },
    "upgrade resets (x20)": async (r) => {
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => {
          const auth = resetCreds[i % resetCreds.length];
          const req = `GET /v1/nodes/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${Buffer.from(newId().slice(0, 16)).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n${auth ? `Authorization: ${auth}\r\n` : ""}\r\n`;
          return requestThenReset(r.url, req, i % 6);
        }),
      );
    },
    "slow reader": async (r) => {
      slowActive ??= slowReader(r).catch((e) => {
        bump(chaosOdd, `slow reader: ${(e as Error).message}`);
      });
    },
    ...(USE_PG
      ? {
          pg_terminate_backend: async (r: Replica) => {
            await pgClient!.query(
              "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
              [appName(r)],
            );
          },
        }
      : {}),
  };
  // CHAOS=name,name… limits the chaos to those actions (CHAOS=none: the workload alone, as a baseline).
  const names = Object.keys(actions).filter(
    (n) => !process.env.CHAOS || process.env.CHAOS.split(",").some((c) => n.startsWith(c.trim())),
  );
  const chaosLoop = (async () => {
    while (running && names.length > 0) {
      const name = pick(names);
      const r = pick(replicas);
      bump(chaos, name);
      try {
        await actions[name]!(r);
      } catch (e) {
        bump(chaosOdd, `${name}: ${(e as Error).message.slice(0, 80)}`);
      }
      await sleep(150 + Math.random() * 250);
    }
  })();

  let lastReport = Date.now();
  while (Date.now() < deadline) {
    await sleep(1000);
    if (Date.now() - lastReport >= 10_000) {
      lastReport = Date.now();
      console.log(
        `[${Math.round((deadline - Date.now()) / 1000)} s left] calls ${calls.made} ok ${calls.ok} crashes ${replicas.reduce((n, r) => n + r.crashes, 0)}`,
      );
    }
  }
  running = false;
  await Promise.all([sequential, ...concurrent, big, chaosLoop]);
  await slowActive;

  // ---- the store's view: every instruction of the coordinators' runs ended with exactly one reply
  const runIds = [runA.id, runB.id];
  const audit = async () => {
    if (!USE_PG) {
      const db = new DatabaseSync(join(dir, "hub.db"), { readOnly: true });
      try {
        const q = (sql: string) => (db.prepare(sql).get(...runIds) as { n: number }).n;
        return {
          instructions: q("SELECT count(*) n FROM instructions WHERE run_id IN (?, ?)"),
          open: q("SELECT count(*) n FROM instructions WHERE run_id IN (?, ?) AND state <> 'done'"),
          noReply: q(
            "SELECT count(*) n FROM instructions i WHERE run_id IN (?, ?) AND NOT EXISTS (SELECT 1 FROM replies r WHERE r.reply_to = i.id)",
          ),
          dupReplies: q(
            "SELECT count(*) n FROM (SELECT reply_to FROM replies WHERE run_id IN (?, ?) GROUP BY reply_to HAVING count(*) > 1)",
          ),
        };
      } finally {
        db.close();
      }
    }
    const q = async (sql: string) =>
      Number((await pgClient!.query(sql.replaceAll("$S", `"${schema}"`), runIds)).rows[0].n);
    return {
      instructions: await q("SELECT count(*) n FROM $S.instructions WHERE run_id IN ($1, $2)"),
      open: await q("SELECT count(*) n FROM $S.instructions WHERE run_id IN ($1, $2) AND state <> 'done'"),
      noReply: await q(
        "SELECT count(*) n FROM $S.instructions i WHERE run_id IN ($1, $2) AND NOT EXISTS (SELECT 1 FROM $S.replies r WHERE r.reply_to = i.id)",
      ),
      dupReplies: await q(
        "SELECT count(*) n FROM (SELECT reply_to FROM $S.replies WHERE run_id IN ($1, $2) GROUP BY reply_to HAVING count(*) > 1) d",
      ),
    };
  };
  const settleBy = Date.now() + 3 * LEASE_MS + 20_000;
  let a = await audit();
  while ((a.open > 0 || a.noReply > 0) && Date.now() < settleBy) {
    await sleep(1000);
    a = await audit();
  }

  // ---- handler runs: one per instruction (the agent re-sends a stored reply instead of re-running)
  const runsPerInstruction = new Map<string, number>();
  for (let i = 0; i < NODES; i++) {
    const f = join(dir, `count-${i}.txt`);
    if (existsSync(f))
      for (const id of readFileSync(f, "utf8").split("\n").filter(Boolean)) bump(runsPerInstruction, id);
  }
  const handlerRunsTwice = [...runsPerInstruction.values()].filter((n) => n > 1).length;

  const crashes = replicas.reduce((n, r) => n + r.crashes, 0);
  const lost = a.open + a.noReply;
  const duplicated = handlerRunsTwice + a.dupReplies;
  const rows: Record<string, string | number> = {
    "calls made": calls.made,
    "calls ok": calls.ok,
    ...Object.fromEntries(
      [...calls.failedByCode].map(([k, v]) => [
        `calls failed: ${k}`,
        `${v} (at ${failedWhen.get(k)![0]}–${failedWhen.get(k)![1]} s)`,
      ]),
    ),
    "wrong replies (payload mismatch)": calls.wrongReplies,
    "oversized replies → PAYLOAD_TOO_LARGE": `${oversized.payloadTooLarge} of ${oversized.made}`,
    ...Object.fromEntries([...oversized.other].map(([k, v]) => [`oversized replies: ${k}`, v])),
    "instructions (coordinator runs)": a.instructions,
    "lost replies (no reply at all)": lost,
    "duplicated: handler ran twice": handlerRunsTwice,
    "duplicated: two replies for one instruction": a.dupReplies,
    "hub process crashes": crashes,
    ...Object.fromEntries(
      replicas.map((r) => [`peak RSS ${r.name}`, `${(r.peakRssKb / 1024).toFixed(1)} MiB`]),
    ),
    ...Object.fromEntries(
      replicas.map((r) => [`stderr ${r.name}`, `${(r.stderrBytes / 1024).toFixed(1)} KiB`]),
    ),
    ...Object.fromEntries([...chaos].map(([k, v]) => [`chaos: ${k}`, v])),
    ...Object.fromEntries([...chaosOdd].map(([k, v]) => [`chaos note: ${k}`, v])),
  };
  console.log("\nsoak:chaos results");
  console.table(rows);
  for (const r of replicas) for (const l of r.crashLogs) console.error(l);
  if (crashes > 0 || lost > 0 || duplicated > 0 || calls.wrongReplies > 0) {
    console.error(
      `FAIL: crashes ${crashes}, lost ${lost}, duplicated ${duplicated}, wrong replies ${calls.wrongReplies}`,
    );
    exitCode = 1;
  } else console.log("PASS: no crash, no lost or duplicated reply");
} catch (e) {
  console.error("soak:chaos aborted:", e);
  exitCode = 2;
} finally {
  running = false;
  await cleanup();
}
process.exit(exitCode);
