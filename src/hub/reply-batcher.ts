import type { NewReply, Store, StoreReplyResult } from "../store/store.ts";

/**
 * Collects replies from every node stream of this replica and stores them in one transaction per batch, so a
 * PostgreSQL hub pays one commit for many replies (group commit across nodes).
 */
export class ReplyBatcher {
  private queue: { item: NewReply; done: (r: StoreReplyResult) => void; fail: (e: unknown) => void }[] = [];
  private flushing = false;
  private readonly store: Store;
  private readonly maxBatch: number;

  constructor(store: Store, maxBatch = 128) {
    this.store = store;
    this.maxBatch = maxBatch;
  }

  store1(item: NewReply): Promise<StoreReplyResult> {
    return new Promise((done, fail) => {
      this.queue.push({ item, done, fail });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      try {
        const results = await this.store.storeReplies(batch.map((b) => b.item));
        for (const [i, b] of batch.entries()) b.done(results[i]!);
      } catch (e) {
        for (const b of batch) b.fail(e);
      }
    }
    this.flushing = false;
  }
}
