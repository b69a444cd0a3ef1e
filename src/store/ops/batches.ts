import type { Db } from "../dialect.ts";

/** One item's outcome in a batch: a batch that stores some items may refuse others. */
export type Outcome<R> = { ok: R } | { error: unknown };

interface Waiting<T, R> {
  item: T;
  done: (r: R) => void;
  fail: (e: unknown) => void;
}

/**
 * Group commit inside the store, for writes a connect storm makes one per node (enrolments, hellos): what
 * arrives while a batch is being stored goes in the next one, one transaction per batch. Nothing waits when the
 * store is idle but the rest of the current turn of the event loop (the other sockets read in it), as the hub's
 * GroupCommit does for replies. Two items with the same key never share a batch, so the later one is written by
 * a later transaction, as if each had its own.
 */
export class Batches<T, R> {
  private queue: Waiting<T, R>[] = [];
  private flushing = false;
  private readonly commit: (items: T[]) => Promise<Outcome<R>[]>;
  private readonly key: (item: T) => string;
  private readonly max: number;

  constructor(commit: (items: T[]) => Promise<Outcome<R>[]>, key: (item: T) => string, max: number) {
    this.commit = commit;
    this.key = key;
    this.max = max;
  }

  add(item: T): Promise<R> {
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
      const batch = this.next();
      try {
        const out = await this.commit(batch.map((w) => w.item));
        for (const [i, w] of batch.entries()) {
          const o = out[i]!;
          if ("ok" in o) w.done(o.ok);
          else w.fail(o.error);
        }
      } catch (e) {
        for (const w of batch) w.fail(e);
      }
    }
    this.flushing = false;
  }

  /** The oldest waiting items, up to `max`, stopping before a key's second item. */
  private next(): Waiting<T, R>[] {
    const keys = new Set<string>();
    let n = 0;
    while (n < this.queue.length && n < this.max && !keys.has(this.key(this.queue[n]!.item)))
      keys.add(this.key(this.queue[n++]!.item));
    return this.queue.splice(0, n);
  }
}

/** One Batches per store handle and kind of write. */
export const batchesOf = <T, R>(
  registry: WeakMap<Db, Batches<T, R>>,
  db: Db,
  make: () => Batches<T, R>,
): Batches<T, R> => {
  let b = registry.get(db);
  if (!b) {
    b = make();
    registry.set(db, b);
  }
  return b;
};
