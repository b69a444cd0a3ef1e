// fleetlink/blob: the SDK side of blobs (payload codec, transfers, cache, handles), shared by the coordinator
// and the node agent. Imports protocol and util only.
export { BlobCache, DEFAULT_BLOB_CACHE_BYTES } from "./cache.ts";
export {
  BlobClient,
  type BlobClientOptions,
  type BlobEndpoint,
  type BlobTransferStats,
  BlobTransfers,
} from "./client.ts";
export {
  type BlobMode,
  type DecodeOptions,
  decodePayload,
  type EncodeOptions,
  encodePayload,
} from "./codec.ts";
export { type BlobReader, type BlobStreamOptions, FleetBlob } from "./handle.ts";
export type { BlobSource } from "./source.ts";
