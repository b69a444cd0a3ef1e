import type { Op } from "./history.ts";
import type { HarnessError } from "./network.ts";

export interface Results {
  workload: string;
  valid: boolean;
  /** Why the run is invalid, one line each. */
  problems: string[];
  ops: { total: number; ok: number; fail: number; info: number };
  /** Broadcast and g-set. */
  lost?: unknown[];
  unexpected?: unknown[];
  staleReads?: number;
  stableLatencyMs?: { p50: number; p95: number; max: number; count: number };
  latencyPoints?: [number, number][];
  /** Inter-server messages per client operation (Maelstrom's :servers :msgs-per-op). */
  msgsPerOp: number;
  serverMsgs: number;
  clientMsgs: number;
  droppedMsgs: number;
  errors: HarnessError[];
}

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
};

const key = (v: unknown) => JSON.stringify(v);

/**
 * Grow-only set checker (broadcast, g-set): every acknowledged add must be in every node's final read (else
 * lost), no read may contain a value never added (unexpected), and the stable latency of a value is the time
 * from its acknowledgement until after the last read that still missed it completed.
 */
export const checkSet = (
  ops: Op[],
  addF: string,
  readValues: (op: Op) => unknown[],
): Omit<
  Results,
  | "workload"
  | "msgsPerOp"
  | "serverMsgs"
  | "clientMsgs"
  | "droppedMsgs"
  | "errors"
  | "valid"
  | "problems"
  | "ops"
> & { problems: string[] } => {
  const problems: string[] = [];
  const adds = ops.filter((o) => o.f === addF);
  const acked = adds.filter((o) => o.type === "ok");
  const attempted = new Set(adds.map((o) => key(o.value)));
  const reads = ops.filter((o) => o.f === "read" && o.type === "ok" && !o.final);
  const finals = ops.filter((o) => o.f === "read" && o.final);
  const failedFinal = finals.filter((o) => o.type !== "ok");
  if (failedFinal.length) problems.push(`final read failed on ${failedFinal.map((o) => o.node).join(", ")}`);
  const finalSets = finals
    .filter((o) => o.type === "ok")
    .map((o) => ({ node: o.node, set: new Set(readValues(o).map(key)) }));
  const lost = acked.filter((a) => finalSets.some((f) => !f.set.has(key(a.value)))).map((a) => a.value);
  if (lost.length) problems.push(`${lost.length} acknowledged value(s) missing from final reads`);
  const unexpected = new Set<string>();
  for (const r of [...reads, ...finals.filter((o) => o.type === "ok")])
    for (const v of readValues(r)) if (!attempted.has(key(v))) unexpected.add(key(v));
  if (unexpected.size) problems.push(`${unexpected.size} value(s) read that were never added`);
  const readSets = reads.map((r) => ({ r, set: new Set(readValues(r).map(key)) }));
  let stale = 0;
  const latencies: [number, number][] = [];
  for (const a of acked) {
    const k = key(a.value);
    let lastMiss = a.complete!;
    for (const { r, set } of readSets)
      if (r.invoke > a.complete! && !set.has(k)) {
        stale++;
        lastMiss = Math.max(lastMiss, r.complete!);
      }
    if (!lost.includes(a.value)) latencies.push([a.complete!, lastMiss - a.complete!]);
  }
  const ls = latencies.map((l) => l[1]);
  return {
    problems,
    lost,
    unexpected: [...unexpected].map((u) => JSON.parse(u)),
    staleReads: stale,
    stableLatencyMs: {
      p50: pct(ls, 0.5),
      p95: pct(ls, 0.95),
      max: ls.length ? Math.max(...ls) : 0,
      count: ls.length,
    },
    latencyPoints: latencies,
  };
};

/** Runs the workload's checker and adds what every run reports. */
export const check = (
  workload: string,
  ops: Op[],
  net: { serverMsgs: number; clientMsgs: number; dropped: number; errors: HarnessError[] },
): Results => {
  const counted = ops.filter((o) => !o.final);
  const base = {
    workload,
    ops: {
      total: counted.length,
      ok: counted.filter((o) => o.type === "ok").length,
      fail: counted.filter((o) => o.type === "fail").length,
      info: counted.filter((o) => o.type === "info").length,
    },
    msgsPerOp: counted.length ? net.serverMsgs / counted.length : 0,
    serverMsgs: net.serverMsgs,
    clientMsgs: net.clientMsgs,
    droppedMsgs: net.dropped,
    errors: net.errors,
  };
  let part: { problems: string[] } & Partial<Results> = { problems: [] };
  if (workload === "broadcast")
    part = checkSet(ops, "broadcast", (o) => (o.result as { messages?: unknown[] })?.messages ?? []);
  else if (workload === "g-set")
    part = checkSet(ops, "add", (o) => (o.result as { value?: unknown[] })?.value ?? []);
  else if (workload === "echo") {
    const bad = ops.filter((o) => o.type === "ok" && (o.result as { echo?: unknown })?.echo !== o.value);
    if (bad.length) part.problems.push(`${bad.length} echo replies did not match`);
  } else if (workload === "unique-ids") {
    const ids = ops
      .filter((o) => o.type === "ok")
      .map((o) => JSON.stringify((o.result as { id?: unknown })?.id));
    const dup = ids.length - new Set(ids).size;
    if (dup) part.problems.push(`${dup} duplicate ids`);
  }
  if (base.ops.ok === 0) part.problems.push("no operation succeeded");
  for (const e of net.errors) part.problems.push(`${e.node}: ${e.kind} (${e.detail})`);
  return { ...base, ...part, valid: part.problems.length === 0, problems: part.problems };
};
