/** Holds the latest status and lets any number of readers follow every change with `for await`. */
export class StatusFeed<S> {
  private current: S;
  private readonly followers = new Set<{ queue: S[]; wake: (() => void) | null }>();
  private done = false;

  constructor(initial: S) {
    this.current = initial;
  }

  get value(): S {
    return this.current;
  }

  set(s: S, final = false): void {
    this.current = s;
    this.done = final;
    for (const f of this.followers) {
      f.queue.push(s);
      f.wake?.();
    }
  }

  /** Yields the current status, then every change in order (none skipped), until the final one. */
  async *follow(): AsyncGenerator<S> {
    const me = { queue: [this.current], wake: null as (() => void) | null };
    this.followers.add(me);
    try {
      for (;;) {
        while (me.queue.length > 0) {
          const s = me.queue.shift()!;
          yield s;
          if (this.done && me.queue.length === 0 && s === this.current) return;
        }
        await new Promise<void>((r) => {
          me.wake = r;
        });
        me.wake = null;
      }
    } finally {
      this.followers.delete(me);
    }
  }
}
