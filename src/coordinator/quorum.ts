import type { FleetlinkError } from "../protocol/errors.ts";

export type QuorumDecision = "done" | "fail" | "wait";

export interface QuorumState {
  /** Successful replies so far, by node id. */
  replies: ReadonlyMap<string, unknown>;
  /** Failed nodes so far, by node id. */
  errors: ReadonlyMap<string, FleetlinkError>;
  /** Every node the call addressed. */
  nodes: readonly string[];
}

export type QuorumFunction = (s: QuorumState) => QuorumDecision;
export type Quorum = "first" | "majority" | "all" | { threshold: number } | QuorumFunction;

const threshold =
  (k: number): QuorumFunction =>
  ({ replies, errors, nodes }) => {
    if (replies.size >= k) return "done";
    const outstanding = nodes.length - replies.size - errors.size;
    return replies.size + outstanding < k ? "fail" : "wait";
  };

/** Turns a quorum spec into its decision function. */
export const quorumFunction = (q: Quorum, n: number): QuorumFunction => {
  if (typeof q === "function") return q;
  if (q === "first") return threshold(1);
  if (q === "majority") return threshold(Math.floor(n / 2) + 1);
  if (q === "all") return threshold(n);
  if (typeof q === "object" && Number.isInteger(q.threshold) && q.threshold >= 1 && q.threshold <= n)
    return threshold(q.threshold);
  throw new TypeError(`quorum: must be first, majority, all, { threshold: 1..${n} } or a function`);
};
