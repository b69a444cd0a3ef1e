/** A node agent's connection status, as a typed union an application can switch on. */
export type AgentStatus =
  | { state: "idle" }
  | { state: "enrolling"; hub: string; attempt?: number; error?: string }
  | { state: "connecting"; hub: string; attempt: number }
  | { state: "online"; hub: string; nodeId: string }
  | { state: "offline"; reason: string; retryInMs: number }
  /** Enrolled, waiting for an admin to approve the node (`fleetlink nodes approve <id>`); retries meanwhile. */
  | { state: "pending"; nodeId: string; retryInMs: number }
  /**
   * The hub does not accept this identity (unknown credential, node unregistered: final, unless `reenroll`) or
   * this client certificate (missing, expired, foreign, bound to another node: final; docs/mtls.md).
   */
  | { state: "rejected"; reason: string }
  | { state: "stopping" }
  | { state: "stopped" };
