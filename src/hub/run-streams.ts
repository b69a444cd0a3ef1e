import type { Reply } from "../protocol/types.ts";
import { RunEvents, toWireResult } from "../protocol/wire.ts";
import type { Store } from "../store/store.ts";
import { Channel, type Logger } from "../stream/channel.ts";
import type { Transport } from "../stream/transport.ts";
import { Coalesced } from "./coalesce.ts";

/**
 * Coordinator streams: a coordinator subscribed to a run gets that run's replies pushed as they are stored,
 * so a quorum call never polls. Replies are claimed (exactly once across replicas) right before they are
 * sent; a coordinator that reconnects reads back the replies of its open calls with getReplies, so a push
 * lost with a dying socket is recovered, not lost.
 */
export class RunStreams {
  private readonly subs = new Map<string, Set<Channel>>();
  private readonly pump: Coalesced;
  private readonly store: Store;
  private readonly log: Logger;
  private readonly maxFrame: number;

  /** `maxFrameBytes`: replies are sent in frames no larger than this (each reply fits in one). */
  constructor(store: Store, log: Logger, maxFrameBytes: number) {
    this.store = store;
    this.log = log;
    this.maxFrame = maxFrameBytes;
    this.pump = new Coalesced(
      () => this.deliver(),
      (e) => log.warn({ err: String(e) }, "reply delivery failed"),
    );
  }

  get subscribers(): number {
    let n = 0;
    for (const s of this.subs.values()) n += s.size;
    return n;
  }

  wake(): void {
    if (this.subs.size) this.pump.trigger();
  }

  accept(runId: string, transport: Transport): Channel {
    const ch = new Channel(transport, { log: this.log });
    const set = this.subs.get(runId) ?? new Set<Channel>();
    this.subs.set(runId, set);
    set.add(ch);
    ch.onClose(() => {
      set.delete(ch);
      if (set.size === 0 && this.subs.get(runId) === set) this.subs.delete(runId);
    });
    this.wake();
    return ch;
  }

  private async deliver(): Promise<void> {
    for (const [runId, chans] of this.subs) {
      // The newest open stream: after a partition the older one may be a dead socket the hub has not noticed yet.
      const ch = [...chans].reverse().find((c) => c.isOpen);
      if (!ch) continue;
      for (;;) {
        const replies = await this.store.claimReplies({ runId, limit: 500 });
        if (replies.length === 0) break;
        for (const frame of framed(replies, this.maxFrame))
          ch.emit(RunEvents.replies, frame.map(toWireResult));
        if (replies.length < 500) break;
      }
    }
  }

  closeAll(): void {
    for (const set of this.subs.values()) for (const ch of set) ch.close(1001, "hub shutting down");
  }
}

/** Splits replies into groups whose encoding stays under `max` bytes (each reply fits in one frame alone). */
const framed = (items: Reply[], max: number): Reply[][] => {
  const out: Reply[][] = [];
  let cur: Reply[] = [];
  let size = 0;
  for (const it of items) {
    const n = it.payload.byteLength + (it.error?.message.length ?? 0) + 512;
    if (cur.length > 0 && size + n > max) {
      out.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(it);
    size += n;
  }
  if (cur.length > 0) out.push(cur);
  return out;
};
