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
   * this client certificate (missing, expired, foreign, bound to another node: final; docs/mtls.md), or the
   * agent gave up its identity to another process using it, or was started under another name than its own.
   */
  | {
      state: "rejected";
      reason: string;
      /**
       * Why, as an error code: FLEETLINK_E_CONFLICT when another process kept taking this identity's stream
       * (see NodeAgentOptions.maxConflicts), FLEETLINK_E_INVALID_ARGUMENT when the hub knows this identity by
       * another name, else the refusal's code. (Absent: the hub refused the identity or certificate)
       */
      code?: string;
    }
  | { state: "stopping" }
  | { state: "stopped" };
