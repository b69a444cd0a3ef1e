import { NodeMethods } from "../../protocol/wire.ts";
import type { Cancellation, Store } from "../../store/store.ts";
import type { Logger } from "../../stream/channel.ts";
import type { PeerTable } from "../../stream/peers.ts";
import { Coalesced } from "../../util/coalesce.ts";
import type { Session } from "./session.ts";

/** Entries read from the cancellation log per statement; a longer backlog is read in further rounds. */
const PAGE = 1000;

export interface CancellationsOptions {
  store: Store;
  /** The node streams here that said hello, by node id. */
  peers: PeerTable<Session>;
  log: Logger;
  /** Instructions a `cancel` event told their node about, by code (the /metrics counter). */
  onCancelled?: (code: string, count: number) => void;
}

/**
 * Tells the nodes connected here that instructions they hold ended before they replied. The store writes every
 * delivered instruction that ends with an error outcome (withdrawn, expired, out of attempts, node unavailable)
 * to its cancellation log, on whichever replica made it end; every replica reads the log from where it last
 * stopped whenever the store wakes it (a change here or on another replica) and on its periodic poll, and sends
 * one `cancel` event per node and code to the streams it holds. Entries for nodes held elsewhere are skipped:
 * their replica sends them.
 */
export class Cancellations {
  private readonly o: CancellationsOptions;
  private readonly reader: Coalesced;
  /** Last log position read; null until the first read sets it to the log's current end (start-up). */
  private seq: number | null = null;

  constructor(o: CancellationsOptions) {
    this.o = o;
    this.reader = new Coalesced(
      () => this.read(),
      (e) => o.log.warn({ err: String(e) }, "cancellation log read failed"),
    );
    // Start from the log's current end: what ended before this replica started concerns streams it never held.
    this.reader.trigger();
  }

  /** Reads the log soon (coalesced: wakes during a read fold into one more read). */
  wake(): void {
    this.reader.trigger();
  }

  close(): void {
    this.reader.close();
  }

  /**
   * Tells one session that these instructions ended (its hello named them in `inflight`, and the store no
   * longer holds them for it), with the code that says why, and forgets them from its in-flight set.
   */
  tell(s: Session, ids: readonly string[], code: string): void {
    if (ids.length === 0 || !s.channel.isOpen) return;
    for (const id of ids) s.inflight.delete(id);
    try {
      s.channel.emit(NodeMethods.cancel, { ids, code });
    } catch (e) {
      this.o.log.warn({ err: String(e), node: s.node.id }, "cancel event not sent");
      return;
    }
    this.o.log.debug({ node: s.node.id, code, count: ids.length }, "cancel sent");
    this.o.onCancelled?.(code, ids.length);
  }

  private async read(): Promise<void> {
    for (;;) {
      const { seq, items } = await this.o.store.cancellationsSince(this.seq, PAGE);
      const first = this.seq === null;
      this.seq = Math.max(this.seq ?? 0, seq);
      if (first) return;
      this.deliver(items);
      if (items.length < PAGE) return;
    }
  }

  private deliver(items: readonly Cancellation[]): void {
    // One event per node and code: a quorum's withdraw of many instructions to one node is one frame.
    const batches = new Map<Session, Map<string, string[]>>();
    for (const c of items) {
      const s = this.o.peers.get(c.nodeId);
      if (!s?.ready) continue;
      let byCode = batches.get(s);
      if (!byCode) {
        byCode = new Map();
        batches.set(s, byCode);
      }
      const ids = byCode.get(c.code);
      if (ids) ids.push(c.instructionId);
      else byCode.set(c.code, [c.instructionId]);
    }
    for (const [s, byCode] of batches) for (const [code, ids] of byCode) this.tell(s, ids, code);
  }
}
