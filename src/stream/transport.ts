import { CloseCode } from "../protocol/close-codes.ts";

/**
 * The one thing the stream layer needs from a connection: send and receive text frames, learn that it closed.
 * WebSocket, stdio and in-memory transports are thin adapters; the router and calls import no node:* module.
 */
export interface Transport {
  send(frame: string): void;
  close(code?: number, reason?: string): void;
  onMessage(cb: (frame: string) => void): void;
  onClose(cb: (code: number, reason: string) => void): void;
  readonly isOpen: boolean;
  /** Asks the peer for a sign of life (a WebSocket ping); the answer arrives at `onAlive`. (Optional) */
  ping?(): void;
  /** Every sign of life: a frame, a pong, the peer's own ping. (Optional; without it frames alone count) */
  onAlive?(cb: () => void): void;
  /** Ends the connection at once, without a closing handshake a dead peer would never answer. (Optional) */
  terminate?(): void;
  /**
   * This connection's own dead-peer rule, when its silences differ from the watcher's default (an HTTP node
   * session: a parked poll is silent by design, and each probe is a request). (Optional)
   */
  readonly liveness?: { probeAfterMs: number; dropAfterMs: number };
  /**
   * Frames sent in one callback leave in one write (a corked socket): an answer held back until the next frame
   * then costs no write of its own (see ChannelOptions.deferAnswers). (Optional; default false)
   */
  readonly coalesces?: boolean;
  /**
   * The peer speaks at least every `intervalMs` (a node's heartbeats, known at its hello): the hub's dead-peer
   * watch of this connection judges silences by that when it is longer (see Watched.expectEvery). (Optional)
   */
  expectEvery?(intervalMs: number): void;
  /** An HTTP node session: its polls carry instruction requests and acknowledge them, not stream events. */
  readonly polled?: boolean;
}

/**
 * The listener lists of a Transport adapter written as a class (the HTTP node session on either side):
 * `onMessage`, `onClose` and `onAlive` register, the adapter calls `emit…`.
 */
export class TransportEvents {
  private readonly messageListeners: ((frame: string) => void)[] = [];
  private readonly closeListeners: ((code: number, reason: string) => void)[] = [];
  private readonly aliveListeners: (() => void)[] = [];

  onMessage(cb: (frame: string) => void): void {
    this.messageListeners.push(cb);
  }

  onClose(cb: (code: number, reason: string) => void): void {
    this.closeListeners.push(cb);
  }

  onAlive(cb: () => void): void {
    this.aliveListeners.push(cb);
  }

  protected emitMessage(frame: string): void {
    for (const cb of this.messageListeners) cb(frame);
  }

  protected emitClose(code: number, reason: string): void {
    for (const cb of this.closeListeners) cb(code, reason);
  }

  protected emitAlive(): void {
    for (const cb of this.aliveListeners) cb();
  }
}

/** An in-memory transport, with the faults tests need: a path that goes silent without closing. */
export interface MemoryTransport extends Transport {
  ping(): void;
  onAlive(cb: () => void): void;
  terminate(): void;
  /** From now on nothing crosses the pair in either direction and neither side learns of a close (half-open). */
  blackhole(): void;
}

/** Two connected in-memory transports (tests, and a hub and node in one process). */
export const memoryPair = (): [MemoryTransport, MemoryTransport] => {
  const make = () => ({
    open: true,
    msg: [] as ((f: string) => void)[],
    closed: [] as ((c: number, r: string) => void)[],
    alive: [] as (() => void)[],
  });
  const a = make();
  const b = make();
  let holed = false;
  const shut = (s: typeof a, code: number, reason: string) => {
    if (!s.open) return;
    s.open = false;
    queueMicrotask(() => {
      for (const cb of s.closed) cb(code, reason);
    });
  };
  const end = (self: typeof a, other: typeof a, code: number, reason: string) => {
    shut(self, code, reason);
    if (!holed) shut(other, code, reason);
  };
  const side = (self: typeof a, other: typeof a): MemoryTransport => ({
    send: (f) => {
      if (!self.open || holed) return;
      queueMicrotask(() => {
        if (!other.open || holed) return;
        for (const cb of other.alive) cb();
        for (const cb of other.msg) cb(f);
      });
    },
    close: (code: number = CloseCode.normal, reason = "") => end(self, other, code, reason),
    terminate: () => end(self, other, CloseCode.abnormal, ""),
    onMessage: (cb) => void self.msg.push(cb),
    onClose: (cb) => void self.closed.push(cb),
    onAlive: (cb) => void self.alive.push(cb),
    ping: () => {
      if (!self.open || holed) return;
      queueMicrotask(() => {
        if (!other.open || holed) return;
        for (const cb of other.alive) cb(); // it hears our ping
        for (const cb of self.alive) cb(); // we hear its pong
      });
    },
    blackhole: () => {
      holed = true;
    },
    get isOpen() {
      return self.open;
    },
  });
  return [side(a, b), side(b, a)];
};
