export type { HostInfo, Manifest } from "./checkpoint/layout.ts";
export type { NodeState, Snapshot, StandbyOptions } from "./checkpoint/node-side.ts";

export { type ObjectStore, readAll } from "./checkpoint/object-store.ts";
export { openObjectStore } from "./checkpoint/open.ts";
export type { OpStatus, Roles, TakeoverRetry, TakeoverStatus } from "./checkpoint/orchestrator.ts";
export type { RoleChange } from "./checkpoint/roles.ts";
export { CheckpointClient, type CheckpointSummary } from "./coordinator/checkpoints.ts";
export { IncompleteCallError } from "./coordinator/errors.ts";
export { type EnrollToken, Fleet, type FleetNode, type FleetOptions } from "./coordinator/fleet.ts";
export type { Quorum, QuorumDecision, QuorumFunction, QuorumState } from "./coordinator/quorum.ts";
export {
  Broadcast,
  type BroadcastNodeState,
  type CallOptions,
  type CallResult,
  Configuration,
  RunHandle,
  type StreamItem,
} from "./coordinator/run.ts";
export { createHub, type Hub, type HubOptions } from "./hub/server.ts";
export {
  type Handler,
  type HandlerContext,
  NodeAgent,
  type NodeAgentOptions,
  type NodeIdentity,
} from "./node/agent.ts";
export type { AgentPlugin, AgentPluginHost } from "./node/plugin.ts";
export type { AgentStatus } from "./node/status.ts";
export { ErrorCodes, FleetlinkError, isFleetlinkError } from "./protocol/errors.ts";
export type * from "./protocol/types.ts";
export { openStore } from "./store/open.ts";
export type { Store, StoreOptions } from "./store/store.ts";
