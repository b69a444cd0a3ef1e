import type { StoredRecord } from "../store/store.ts";
import { callHosts } from "./host-calls.ts";
import type { HostPart, Manifest } from "./layout.ts";
import type { CallResult } from "./node-calls.ts";
import { errorKind } from "./object-store.ts";
import { type HostStatus, type OpContext, OpRecord, type OpStatus } from "./op-record.ts";
import type { HostRole, Roles } from "./roles.ts";

/**
 * Every host restores its part and replies when done (its agent extends the lease with progress meanwhile);
 * each reply updates that host's status in the record as it arrives, and the operation ends when every host
 * has answered (an unanswered host fails at the transfer timeout, or sooner as host_unavailable if its node
 * goes offline).
 */
export const runPull = async (
  cx: OpContext,
  runId: string,
  m: Manifest,
  roles: Roles,
  rec0: StoredRecord<OpStatus>,
): Promise<OpStatus> => {
  const rec = new OpRecord(cx.store, rec0);
  const partOf = (h: HostRole) => m.hosts.find((p) => p.hostIdx === h.hostIdx)!;
  // The node checks that it wrote the part itself unless told whose state it restores (startPull decided).
  const from = (h: HostRole) => (partOf(h).nodeId === h.nodeId ? {} : { acceptFrom: partOf(h).nodeId });
  const hostOf = (k: number, r: CallResult): HostStatus => {
    const h = roles.hosts[k]!;
    return { hostIdx: h.hostIdx, nodeId: h.nodeId, ...restoresFrom(h, partOf(h)), ...pullOutcome(r, m.id) };
  };
  try {
    const results = await callHosts(
      cx,
      runId,
      roles,
      (k) => {
        const h = roles.hosts[k]!;
        return {
          dst: h.nodeId,
          method: "checkpoint.pull",
          payload: {
            runId,
            id: m.id,
            hostInfo: { hostIdx: h.hostIdx, nHosts: roles.nHosts },
            part: partOf(h),
            ...from(h),
          },
        };
      },
      (k, r) => {
        const st = hostOf(k, r);
        cx.observe?.host({
          kind: "pull",
          outcome: st.status === "ok" ? "ok" : (st.error?.kind ?? "error"),
          bytes: st.status === "ok" ? partOf(roles.hosts[k]!).size : 0,
        });
        rec
          .save((cur) => ({ hosts: cur.hosts.map((x) => (x.hostIdx === st.hostIdx ? st : x)) }))
          .catch((e) => cx.log.warn({ err: String(e), runId }, "pull status not recorded"));
      },
    );
    rec.end();
    const hosts = results.map((r, k) => hostOf(k, r));
    const bad = hosts.find((h) => h.status === "error");
    return await rec.save(
      bad
        ? { status: "error", hosts, error: { ...bad.error!, hostIdx: bad.hostIdx } }
        : { status: "ok", hosts },
    );
  } catch (e) {
    rec.end();
    const err = { kind: errorKind(e), message: (e as Error).message };
    return rec.save({ status: "error", error: err }).catch(() => rec.value);
  }
};

export const restoresFrom = (h: HostRole, part: HostPart): { restoresFrom?: string } =>
  part.nodeId === h.nodeId ? {} : { restoresFrom: part.nodeId };

/** A host's pull reply as its status: the node replies with how its restore ended (see NodeCheckpoints.pull). */
const pullOutcome = (r: CallResult, id: string): Pick<HostStatus, "status" | "error"> => {
  if (!r.ok) return { status: "error", error: { kind: errorKind(r.error), message: r.error.message } };
  const v = r.value as { status?: string; id?: string; error?: { kind: string; message: string } } | null;
  if (v?.status === "ok" && v.id === id) return { status: "ok" };
  if (v?.status === "error" && v.error) return { status: "error", error: v.error };
  return {
    status: "error",
    error: { kind: "internal", message: `unexpected pull reply ${JSON.stringify(v).slice(0, 200)}` },
  };
};
