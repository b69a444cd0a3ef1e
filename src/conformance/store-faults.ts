import type { NewReply, Store, StoreReplyResult } from "../store/store.ts";

/** One reply a replica asked the store to keep, and what the store said. */
export interface StoredReplyCall {
  at: number;
  replica: number;
  item: NewReply;
  result: StoreReplyResult;
}

/**
 * The store as the kit's replicas see it: every reply store is recorded with its outcome (stored, duplicate,
 * refused and why), and faults can be armed around it:
 * - `afterStore(instructionId, fault)`: runs `fault` once, right after the reply to that instruction was
 *   committed and before the replica answers the node (the kit cuts the node's connection there, so the node
 *   never learns that its reply was stored);
 * - `delayMs`: every reply store waits this long first (a slow hub).
 */
export class StoreFaults {
  readonly replies: StoredReplyCall[] = [];
  delayMs = 0;
  /** Reply stores under way (a slow one outlives the scenario that made it slow). */
  private busy = 0;
  private readonly armed = new Map<string, () => void | Promise<void>>();

  afterStore(instructionId: string, fault: () => void | Promise<void>): void {
    this.armed.set(instructionId, fault);
  }

  /** The outcomes of every reply to this instruction, oldest first. */
  repliesTo(instructionId: string): StoredReplyCall[] {
    return this.replies.filter((r) => r.item.replyTo === instructionId);
  }

  /** Resolves once no reply store is under way, or after `ms`. */
  async idle(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.busy > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  /** `store` with the recording and faults in front of it, for replica number `replica`. */
  wrap(store: Store, replica: number): Store {
    const storeReplies = async (items: readonly NewReply[]): Promise<StoreReplyResult[]> => {
      this.busy++;
      try {
        return await record(items);
      } finally {
        this.busy--;
      }
    };
    const record = async (items: readonly NewReply[]): Promise<StoreReplyResult[]> => {
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      const results = await store.storeReplies(items);
      const at = Date.now();
      const faults: (() => void | Promise<void>)[] = [];
      items.forEach((item, i) => {
        this.replies.push({ at, replica, item, result: results[i]! });
        const fault = this.armed.get(item.replyTo);
        if (fault && results[i]!.ok) {
          this.armed.delete(item.replyTo);
          faults.push(fault);
        }
      });
      for (const f of faults) await f();
      return results;
    };
    return new Proxy(store, {
      get(target, key) {
        if (key === "storeReplies") return storeReplies;
        const v = Reflect.get(target, key, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  }
}
