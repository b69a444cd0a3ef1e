import { FleetlinkError } from "../protocol/errors.ts";
import type { CallResult, NodeCall } from "./node-calls.ts";
import type { OpContext } from "./op-record.ts";
import type { Roles } from "./roles.ts";

/** Longest a host may take to take its role, at `assign` and again before each push or pull, in ms. */
export const ASSIGN_TIMEOUT_MS = 30_000;

/** The instruction that tells host k its role: what `assign` sends, and what every push and pull sends again. */
export const assignCall = (runId: string, roles: Pick<Roles, "nHosts">, nodeId: string, hostIdx: number) => ({
  dst: nodeId,
  method: "checkpoint.assign",
  payload: { runId, hostIdx, nHosts: roles.nHosts },
});

/**
 * Calls every host of a push or pull (`call(k)` builds host k's instruction), after telling each its role
 * again from the run's role record. A node keeps its role in memory only: one that restarted on its identity
 * since `assign` has none, and would refuse with HOST_MISMATCH. The role still reaches a node only as a
 * `checkpoint.assign` built from the hub's record (never from a push's or pull's own hostInfo, which the node
 * checks against it). A host that could not take its role fails with that error and is not called.
 * Results are in host order; `onResult` is told of each.
 */
export const callHosts = async (
  cx: OpContext,
  runId: string,
  roles: Roles,
  call: (k: number) => NodeCall,
  onResult?: (k: number, r: CallResult) => void,
): Promise<CallResult[]> => {
  const told = await cx.callNodes(
    runId,
    roles.hosts.map((h) => assignCall(runId, roles, h.nodeId, h.hostIdx)),
    Math.min(ASSIGN_TIMEOUT_MS, cx.transferTimeoutMs),
  );
  const results: CallResult[] = told.map((r, k) =>
    r.ok
      ? r
      : {
          ok: false,
          error: new FleetlinkError(
            r.error.kind,
            `no ${call(k).method.replace("checkpoint.", "")} sent: telling host ${k} its role first failed: ${r.error.message}`,
            { cause: r.error },
          ),
        },
  );
  const ready = roles.hosts.flatMap((_, k) => (told[k]!.ok ? [k] : []));
  for (const [k, r] of results.entries()) if (!r.ok) onResult?.(k, r);
  if (ready.length > 0) {
    const got = await cx.callNodes(
      runId,
      ready.map((k) => call(k)),
      cx.transferTimeoutMs,
      (i, r) => onResult?.(ready[i]!, r),
    );
    for (const [i, k] of ready.entries()) results[k] = got[i]!;
  }
  return results;
};
