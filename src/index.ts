// fleetlink: everything, as one import. fleetlink/coordinator, fleetlink/node and fleetlink/hub each load
// only their side (package.json "exports").
export type { HostInfo, Manifest } from "./checkpoint/layout.ts";
export {
  NodeCheckpoints,
  type NodeCheckpointsOptions,
  type NodeState,
  nodeCheckpoints,
  type Snapshot,
  type StandbyOptions,
} from "./checkpoint/node-side.ts";
export { readAll } from "./checkpoint/object-store.ts";
export type { OpStatus, Roles, TakeoverRetry, TakeoverStatus } from "./checkpoint/orchestrator.ts";
export type { RoleChange } from "./checkpoint/roles.ts";
export * from "./coordinator/index.ts";
export * from "./hub/index.ts";
export * from "./node/index.ts";
