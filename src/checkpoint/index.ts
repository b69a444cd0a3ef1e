// fleetlink/checkpoints: what a node needs to take part in checkpoints (the nodeCheckpoints plug-in) and the
// object stores they live in. Loads no HTTP server; the AWS SDK loads when an s3:// store is first used.
export type { HostInfo, Manifest } from "./layout.ts";
export {
  NodeCheckpoints,
  type NodeCheckpointsOptions,
  type NodeState,
  nodeCheckpoints,
  type Snapshot,
  type StandbyOptions,
} from "./node-side.ts";
export { type ObjectStore, readAll } from "./object-store.ts";
export { openObjectStore, preloadObjectStore } from "./open.ts";
