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

  constructor(store: Store, log: Logger) {
    this.store = store;
    this.log = log;
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
      const ch = [...chans].find((c) => c.isOpen);
      if (!ch) continue;
      for (;;) {
        const replies = await this.store.claimReplies({ runId, limit: 500 });
        if (replies.length === 0) break;
        ch.emit(RunEvents.replies, replies.map(toWireResult));
        if (replies.length < 500) break;
      }
    }
  }

  closeAll(): void {
    for (const set of this.subs.values()) for (const ch of set) ch.close(1001, "hub shutting down");
  }
}
