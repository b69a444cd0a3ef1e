/**
 * Group commit: what arrives from every stream of this replica while its last batch is being stored goes to
 * the store together, in one call (one transaction) per batch. Nothing waits when the store is idle: the first
 * item of a quiet moment goes at the end of the current turn of the event loop, with whatever else that turn
 * read. Each item gets its own result; a batch that throws fails each of its items with that error.
 */
export class GroupCommit<T, R> {
  private queue: { item: T; done: (r: R) => void; fail: (e: unknown) => void }[] = [];
  /** Flush loops running, and whether one more is about to start. */
  private running = 0;
  private starting = false;
  private readonly commit: (items: T[]) => Promise<R[]>;
  private readonly maxBatch: number;
  private readonly concurrency: number;

  /**
   * `concurrency`: batches stored at once. 1 where the store serialises writes anyway (SQLite); more where
   * commits on separate connections overlap (PostgreSQL flushes them to the log together), so an item that
   * arrives while a batch commits does not wait a whole commit for its turn. (Default: 1)
   */
  constructor(commit: (items: T[]) => Promise<R[]>, maxBatch = 128, concurrency = 1) {
    this.commit = commit;
    this.maxBatch = maxBatch;
    this.concurrency = concurrency;
  }

  add(item: T): Promise<R> {
    return new Promise((done, fail) => {
      this.queue.push({ item, done, fail });
      if (this.starting || this.running >= this.concurrency) return;
      this.starting = true;
      setImmediate(() => {
        this.starting = false;
        void this.flush();
      });
    });
  }

  private async flush(): Promise<void> {
    this.running++;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      try {
        const results = await this.commit(batch.map((b) => b.item));
        for (const [i, b] of batch.entries()) b.done(results[i]!);
      } catch (e) {
        for (const b of batch) b.fail(e);
      }
    }
    this.running--;
  }
}
