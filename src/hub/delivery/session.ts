import type { NodeRecord } from "../../protocol/types.ts";
import type { Channel } from "../../stream/channel.ts";

/** One node stream on this replica: the node, its channel (whose id is the session id) and what is in flight. */
export class Session {
  readonly inflight = new Set<string>();
  /** Slots promised to pushes still committing (see `Dispatcher.lease`). */
  reserved = 0;
  ready = false;
  /** The node asked in hello for batched `instructions` events instead of a request per instruction. */
  instructionEvents = false;
  /** An HTTP node session (its transport has its own liveness rule): instructions go out as requests. */
  polled = false;
  /** Closes the stream if no hello comes in time; cleared by the hello. */
  helloTimer: ReturnType<typeof setTimeout> | undefined;
  readonly node: NodeRecord;
  readonly channel: Channel;
  /** When the last heartbeat not yet recorded in the store arrived (Date.now()), 0: none pending. */
  beatAt = 0;
  /** The interval that heartbeat asked for, if any. */
  beatInterval: number | undefined;
  /** The interval the node is judged by (from hello, then its heartbeats). */
  interval: number;
  /** The node's onlineUntil as last recorded by the store for this session. */
  onlineUntil: number | null;
  /** Tells the dead-peer watch of this stream how often the node speaks (Transport.expectEvery). */
  expectEvery: (intervalMs: number) => void = () => {};
  constructor(node: NodeRecord, channel: Channel) {
    this.node = node;
    this.channel = channel;
    this.interval = node.heartbeatIntervalMs;
    this.onlineUntil = node.onlineUntil;
  }
}

/** A heartbeat interval a node asks to be judged by, if it is a sane one. */
export const heartbeatInterval = (v: unknown): number | undefined =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 100 && v <= 3_600_000 ? v : undefined;

/**
 * How long an answer the peer does not wait on (a reply's acknowledgement, a push's receipt) may wait for the
 * next frame to its stream, to leave in the same write (see ChannelOptions.deferAnswers), in ms.
 */
export const DEFER_ACK_MS = 5;
