import type { Writable } from "node:stream";

/**
 * Every frame a socket sends while one callback of the event loop runs (with the promise jobs it sets off)
 * leaves in one write: a hub answering the calls of one read, or the replies one group commit stored, wrote
 * one `writev` per frame. The first send corks the socket; a queued microtask schedules the uncork as a
 * nextTick, which Node runs once the microtask queue is empty, i.e. before the loop moves on, so no frame
 * waits for other I/O. (Uncorking on setImmediate instead made a broadcast to 2,000 nodes take twice as long
 * in bench:fanout.) ws corks around each frame's header and body itself; corks nest, so its uncork leaves
 * ours in place.
 */
const corked = new Set<Writable>();
let scheduled = false;

const flush = (): void => {
  scheduled = false;
  for (const s of corked) if (!s.destroyed) s.uncork();
  corked.clear();
};

/** Holds `socket`'s writes until the running callback and its promise jobs are done (no-op if held). */
export const corkTurn = (socket: Writable | undefined): void => {
  if (!socket || socket.destroyed || corked.has(socket)) return;
  socket.cork();
  corked.add(socket);
  if (!scheduled) {
    scheduled = true;
    queueMicrotask(() => process.nextTick(flush));
  }
};
