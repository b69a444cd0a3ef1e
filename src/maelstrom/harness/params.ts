// What a harness run is given and what it records, shared by the runner and the report.
import type { WorkloadName } from "../workloads/names.ts";

export interface TestParams {
  workload: WorkloadName;
  /** Shell command that starts one node. */
  bin: string;
  nodeCount: number;
  timeLimitS: number;
  /** Client operations per second, over all clients. */
  rate: number;
  latencyMs: number;
  nemesis: "none" | "partition";
  /** Mean seconds between nemesis actions. (Default: 5) */
  nemesisIntervalS: number;
  topology: "grid" | "line" | "tree" | "total";
  seed: number;
  /** Seconds to wait after healing before the final reads. (Default: 10) */
  recoveryS: number;
  /**
   * Seconds every node has to answer `init` (from the spawn: start-up counts) before the run is invalid and no
   * client runs. (Default: 30)
   */
  initTimeoutS?: number;
  clientTimeoutMs: number;
  /** Run folder for results.json, report.html and node logs. */
  out: string;
}

/** What actually ran: a run whose nodes did not all start has no client operations to check. */
export interface Ran {
  /** Nodes that answered init within the init timeout, of `nodeCount`. */
  initOk: number;
  /** Seconds from the first spawn until the last init_ok (or until the init timeout). */
  initS: number;
  clients: boolean;
  finalReads: boolean;
}

export interface NemesisEvent {
  time: number;
  action: "start" | "heal";
  description: string;
}
