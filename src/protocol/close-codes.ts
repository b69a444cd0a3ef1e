/**
 * Every WebSocket close code fleetlink sends or acts on, by name. Code that closes a stream or decides what
 * to do after one closed uses these names and compares codes, never the reason text (free text, for people).
 * Each comment says what the peer that receives the code must do.
 */
export const CloseCode = {
  /** A deliberate end (the agent or coordinator stops): nothing to do. */
  normal: 1000,
  /** The hub replica is shutting down: reconnect, to another replica if there is one. */
  goingAway: 1001,
  /**
   * The connection dropped without a close frame (reset, a dead peer terminated); never sent on a stream, but
   * an HTTP 410 carries it when the session was dropped because the node stopped polling. Reconnect (open again)
   * and hello with `inflight`.
   */
  abnormal: 1006,
  /**
   * The peer broke the protocol (malformed frames, no hello in time, more than 100 requests refused within
   * 10 s): a bug in the node. Reconnect with backoff
   * (the same bug will likely repeat it) and report it.
   */
  policy: 1008,
  /** A frame larger than the limit: the sender must send less. */
  tooBig: 1009,
  /** Something failed on the closing side (a hello that got no answer): reconnect with backoff. */
  internalError: 1011,
  /**
   * A newer stream of the same node replaced this one (here or on another replica). If the node did not dial
   * it, another process uses its identity: back off hard, since two such agents would replace each other.
   */
  replaced: 4000,
  /**
   * The hub no longer accepts this session: the node was unregistered, or its session was superseded.
   * Reconnect; the upgrade's answer (NODE_UNREGISTERED, UNAUTHORIZED) then says whether the node may come back.
   */
  revoked: 4001,
  /**
   * The node's hello named a protocol version this hub does not speak (the error frame before the close says
   * which versions it does). Do not reconnect with the same version: it is refused again. Stop and say why.
   */
  unsupportedProtocol: 4002,
  /** The peer did not read what was sent to it (slow consumer): reconnect and read faster. */
  slowConsumer: 4008,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];
