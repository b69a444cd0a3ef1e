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
}

/** Two connected in-memory transports (tests, and a hub and node in one process). */
export const memoryPair = (): [Transport, Transport] => {
  const make = () => {
    let open = true;
    const msg: ((f: string) => void)[] = [];
    const closed: ((c: number, r: string) => void)[] = [];
    return {
      msg,
      closed,
      get open() {
        return open;
      },
      set open(v) {
        open = v;
      },
    };
  };
  const a = make();
  const b = make();
  const end = (self: typeof a, other: typeof a, code: number, reason: string) => {
    for (const s of [self, other]) {
      if (!s.open) continue;
      s.open = false;
      queueMicrotask(() => {
        for (const cb of s.closed) cb(code, reason);
      });
    }
  };
  const side = (self: typeof a, other: typeof a): Transport => ({
    send: (f) => {
      if (!self.open) return;
      queueMicrotask(() => {
        if (other.open) for (const cb of other.msg) cb(f);
      });
    },
    close: (code: number = CloseCode.normal, reason = "") => end(self, other, code, reason),
    onMessage: (cb) => void self.msg.push(cb),
    onClose: (cb) => void self.closed.push(cb),
    get isOpen() {
      return self.open;
    },
  });
  return [side(a, b), side(b, a)];
};
