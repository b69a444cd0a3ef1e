// What a node agent is started with (NodeAgent's constructor).
import type { BlobMode } from "../blob/codec.ts";
import type { Logger } from "../stream/channel.ts";
import type { ClientTls } from "../stream/client-tls.ts";
import type { NodeIdentity } from "./enroll.ts";
import type { Handler } from "./handler.ts";
import type { AgentPlugin } from "./plugin.ts";

export interface NodeAgentOptions {
  /** Hub replica URLs (http:// or https://); the agent uses any of them and moves on when one fails. */
  hubs: string[];
  name: string;
  handlers: Record<string, Handler>;
  /** Token to enroll with when the agent has no identity yet. */
  enrollToken?: string;
  /** An identity from an earlier enrollment. */
  identity?: NodeIdentity;
  /** File that keeps the identity across restarts (read if present, written after enrolling). */
  identityFile?: string;
  /**
   * Enroll again (as a new node) when the hub refuses this identity (its database was reset, or the node was
   * unregistered). Without it the agent stops in state `rejected` and says what to do. (Default: false)
   */
  reenroll?: boolean;
  /**
   * Replacements in a row after which the agent gives up its identity: another process uses it (the same
   * identity file, copied or shared), and the hub keeps the newer of two streams, so the two would take turns
   * forever. At the last one the agent stops in state `rejected` (code FLEETLINK_E_CONFLICT); `fleetlink node`
   * exits 6. A replacement of a stream that had been online for `conflictSettleMs` restarts the count, so the
   * agent that was there first outlasts a newcomer. (Default: 3)
   */
  maxConflicts?: number;
  /**
   * How long a stream must have been online for its replacement to start a new count of conflicts rather than
   * add to a running one; longer than a running conflict lets either agent stay online. (Default: 60000)
   */
  conflictSettleMs?: number;
  /** Heartbeat interval in ms. (Default: 5000) */
  heartbeatIntervalMs?: number;
  /** Timeout for one reply send before it is retried, in ms. (Default: 5000) */
  replyTimeoutMs?: number;
  /** Completed instruction ids remembered, so a redelivered instruction is not run twice. (Default: 10000) */
  rememberCompleted?: number;
  log?: Logger;
  /**
   * How the agent reaches a hub: `"ws"`, the WebSocket stream (the fast path), or `"http"`, the HTTP node API
   * (long polls; for networks that let only plain HTTP through). A function is asked at every dial, so a node
   * may switch transports across reconnects. (Default: "ws")
   */
  transport?: "ws" | "http" | (() => "ws" | "http");
  /** Features that run inside the agent and add handlers (e.g. checkpoints); the agent does not import them. */
  plugins?: AgentPlugin[];
  /**
   * How blobs in instruction payloads reach handlers: `"bytes"`, a Buffer (downloaded before the handler
   * runs), or `"lazy"`, a FleetBlob handle to stream or save. (Default: "bytes")
   */
  blobs?: BlobMode;
  /** Binary data in results up to this many bytes travels inline (base64); larger as blobs. (Default: 262144) */
  inlineBytes?: number;
  /** Directory of the downloaded-blob cache, for one process at a time. (Default: a temp dir removed at stop) */
  blobCacheDir?: string;
  /** Bytes the blob cache keeps before evicting the least recently used, never a blob in use. (Default: 4 GiB) */
  blobCacheBytes?: number;
  /**
   * TLS for https:// hubs: the client certificate and key a hub with `--client-ca` requires (docs/mtls.md), and
   * a CA for the hub's certificate, trusted besides the system roots. Used for enrollment, the stream (WebSocket
   * or HTTP) and blob transfers. (Default: none)
   */
  tls?: ClientTls;
}
