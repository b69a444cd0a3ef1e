// fleetlink/node: a worker node's agent, its handler and plug-in types. Loads no HTTP server and no AWS SDK.

export type { BlobMode } from "../blob/codec.ts";
export { type BlobStreamOptions, FleetBlob, type HandlerBlobs } from "../blob/handle.ts";
export type { BlobSource } from "../blob/source.ts";
export type { BlobInfo, BlobRefJson } from "../protocol/blobs.ts";
export { ErrorCodes, FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
export type * from "../protocol/types.ts";
export { NodeAgent, type NodeAgentOptions, type NodeIdentity } from "./agent.ts";
export type { Handler, HandlerContext } from "./handler.ts";
export type { AgentPlugin, AgentPluginHost } from "./plugin.ts";
export type { AgentStatus } from "./status.ts";
