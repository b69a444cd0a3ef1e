// fleetlink/coordinator: what a coordinator needs to drive a fleet through a hub. Loads no HTTP server, no
// store driver and no AWS SDK (bench:imports measures it; test/architecture.test.ts keeps it so).

export type { BlobMode } from "../blob/codec.ts";
export { type BlobStreamOptions, FleetBlob } from "../blob/handle.ts";
export type { BlobSource } from "../blob/source.ts";
export type { BlobInfo, BlobRefJson } from "../protocol/blobs.ts";
export { ErrorCodes, FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
export type * from "../protocol/types.ts";
export { RunBlobs } from "./blobs.ts";
export { CheckpointClient, type CheckpointSummary } from "./checkpoints.ts";
export { type FailedNode, IncompleteCallError } from "./errors.ts";
export {
  type EnrollToken,
  Fleet,
  type FleetNode,
  type FleetOptions,
  type PrincipalToken,
  type Whoami,
} from "./fleet.ts";
export { NodeNames, type NodeRef } from "./names.ts";
export type { Quorum, QuorumDecision, QuorumFunction, QuorumState } from "./quorum.ts";
export {
  Broadcast,
  type BroadcastNodeState,
  type CallOptions,
  type CallResult,
  Configuration,
  RunHandle,
  type StreamItem,
} from "./run.ts";
