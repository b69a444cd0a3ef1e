/**
 * Versions of the node protocol (docs/protocol.md). A node names the version it speaks in `hello`; a hub
 * answers with the versions and features it supports, or refuses a version it does not speak with
 * UNSUPPORTED_PROTOCOL (and, on a stream, close code 4002) naming both.
 *
 * The version changes only when a change would make an existing node misbehave; new optional fields and new
 * methods a node may ignore are announced as features instead.
 */

/** The node protocol version this package speaks. */
export const PROTOCOL_VERSION = 1;

/** The versions a hub of this package accepts in `hello`. (A hub option may narrow them: tests, the kit.) */
export const SUPPORTED_PROTOCOLS: readonly number[] = [PROTOCOL_VERSION];

/**
 * Optional parts of the protocol a hub announces in its hello answer; a node uses one only if it is listed.
 * - `progress`: lease extension by `progress`.
 * - `leave`: a graceful leave (`leave`) marks the node offline at once.
 * - `http`: the HTTP node API (`/v1/node/*`) besides the WebSocket stream.
 * - `cancel`: the hub sends a `cancel` event when a delivered instruction ends before its reply.
 * - `blobs`: the blob routes (`/v1/node/blobs…`, docs/blobs.md); absent when the hub has no blob storage.
 * - `blob-urls`: presigned blob downloads (`GET /v1/node/blobs/:sha256/url`); only with S3 and `blobPresign`.
 * - `instructions`: a node whose hello lists `instructions` in its own `features` gets its instructions as
 *   batched `instructions` events on the WebSocket stream, without acknowledging each (one frame per call less).
 */
export const HUB_FEATURES = [
  "progress",
  "leave",
  "http",
  "cancel",
  "blobs",
  "blob-urls",
  "instructions",
] as const;
export type HubFeature = (typeof HUB_FEATURES)[number];

/** A hello without `protocol` comes from a node older than versioning: it speaks version 1. */
export const IMPLICIT_PROTOCOL = 1;

/** The name a fleetlink node agent reports (with this package's version) in `hello`. */
export const TS_AGENT_NAME = "fleetlink-ts";
