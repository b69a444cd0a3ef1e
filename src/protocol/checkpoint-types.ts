// The checkpoint shapes both sides use: the hub keeps them in its records and answers them on its routes; the
// coordinator SDK reads them. Wire shapes, so they live with the protocol.

export interface HostStatus {
  hostIdx: number;
  nodeId: string;
  status: "in_progress" | "ok" | "error";
  error?: { kind: string; message: string };
  /** Pull: the node whose state this host restores, when another than nodeId wrote the part. */
  restoresFrom?: string;
}

export interface OpStatus {
  status: "not_requested" | "in_progress" | "ok" | "error";
  id?: string;
  hosts: HostStatus[];
  error?: { kind: string; message: string; hostIdx?: number };
  startedAt?: number;
  updatedAt?: number;
}

export interface HostRole {
  hostIdx: number;
  nodeId: string;
  /** Warm standbys for this host, in takeover order. */
  standby: string[];
}

export interface Roles {
  runId: string;
  nHosts: number;
  hosts: HostRole[];
}

/** One host index whose holder or standbys an assignment changed. */
export interface RoleChange {
  hostIdx: number;
  /** Who held the role before (null: a new host index). */
  from: string | null;
  /** Who holds it now (null: the run no longer has this host index). */
  to: string | null;
  /** Set when the standbys changed. */
  standby?: { from: string[]; to: string[] };
  /** What changed, in a sentence (for logs and the CLI). */
  text: string;
}

/** Where the takeover of one host stands; one record per host in the shared store, so replicas agree. */
export interface TakeoverStatus {
  hostIdx: number;
  /** The node that failed. */
  from: string;
  /** The standby asked to take over. */
  to: string | null;
  /** `recovered`: the failed node came back before a standby took over. */
  status: "in_progress" | "retrying" | "failed" | "ok" | "recovered";
  attempts: number;
  /** When the next attempt is due (status retrying). */
  nextAttemptAt?: number;
  /** The last attempt's error; when failed, the message says that it gave up. */
  error?: { kind: string; message: string };
  updatedAt: number;
}
