import type { Writable } from "node:stream";

/**
 * Every frame a socket sends in one event-loop turn goes out in one write: the first send of a turn corks the
 * socket and one shared setImmediate (after this turn's I/O callbacks) uncorks every socket corked meanwhile.
 * A hub answering 256 calls in flight wrote one `writev` per frame; now one per socket per turn. ws corks
 * around each frame's header and body itself; corks nest, so its uncork leaves ours in place.
 */
const corked = new Set<Writable>();
let scheduled = false;

const flush = (): void => {
  scheduled = false;
  for (const s of corked) if (!s.destroyed) s.uncork();
  corked.clear();
};

/** Holds `socket`'s writes until the end of this turn (no-op if it is already held). */
export const corkTurn = (socket: Writable | undefined): void => {
  if (!socket || corked.has(socket) || socket.destroyed) return;
  socket.cork();
  corked.add(socket);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
};
