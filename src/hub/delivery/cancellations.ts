import { NodeMethods } from "../../protocol/wire.ts";
import type { Cancellation, Store } from "../../store/store.ts";
import type { Logger } from "../../stream/channel.ts";
import type { PeerTable } from "../../stream/peers.ts";
import { Coalesced } from "../../util/coalesce.ts";
import type { Session } from "./session.ts";

/** Entries read from the cancellation log per statement; a longer backlog is read in further rounds. */
const PAGE = 1000;
/**
 * Log entries remembered (instruction id → code) for the hellos of nodes that were away when they were read;
 * also how far back (in seqs) a starting replica reads the log.
 */
const REMEMBER = 50_000;

export interface CancellationsOptions {
  store: Store;
  /** The node streams here that said hello, by node id. */
  peers: PeerTable<Session>;
  log: Logger;
  /** Instructions a `cancel` event told their node about, by code (the /metrics counter). */
  onCancelled?: (code: string, count: number) => void;
  /** A session's in-flight set shrank: it may take more instructions now. */
  freed?: (nodeId: string) => void;
}

/**
 * Tells the nodes connected here that instructions they hold ended before they replied. The store writes every
 * delivered instruction that ends with an error outcome (withdrawn, expired, out of attempts, node unavailable)
 * to its cancellation log, on whichever replica made it end; every replica reads the log from where it last
 * stopped whenever the store wakes it (a change here or on another replica) and on its periodic poll, and sends
 * one `cancel` event per node and code to the streams it holds. Entries for nodes held elsewhere are skipped:
 * their replica sends them.
 *
 * A replica that starts (or restarts) first reads back the log's last REMEMBER seqs (the log keeps ≥ 10 min):
 * a node whose stream was on a replica that died, saying hello here naming an instruction withdrawn before
 * this replica started, still gets its cancel. The read is bounded (at most REMEMBER / PAGE statements) and
 * paged; seqs may have gaps (PostgreSQL sequences), so it covers at most, never more than, REMEMBER entries,
 * which is all `recent` keeps anyway.
 */
export class Cancellations {
  private readonly o: CancellationsOptions;
  private readonly reader: Coalesced;
  /** Last log position read; null until the first read finds the log's end and where to read it back from. */
  private seq: number | null = null;
  /**
   * The log's end when this replica started: entries up to it were written before, so they go to a session here
   * only if it says it holds the id (a hello that raced the start-up read); newer ones as usual.
   */
  private seedEnd = 0;
  /** Recent entries, oldest first: a node that reconnects here learns of those it missed. */
  private readonly recent = new Map<string, string>();

  constructor(o: CancellationsOptions) {
    this.o = o;
    this.reader = new Coalesced(
      () => this.read(),
      (e) => o.log.warn({ err: String(e) }, "cancellation log read failed"),
    );
    // Read back the log's recent entries: a node may come here naming instructions that ended before.
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
   * A hello named these ids in `inflight`: those the log says ended (read here while the node was away, or on
   * another replica's stream that died) are cancelled at once. Ids that ended by the node's own reply are not in
   * the log: the node must still resend that reply (answered `duplicate`), so they are not cancelled.
   */
  atHello(s: Session, inflight: readonly string[]): void {
    const byCode = new Map<string, string[]>();
    for (const id of inflight) {
      const code = this.recent.get(id);
      if (code === undefined) continue;
      const ids = byCode.get(code);
      if (ids) ids.push(id);
      else byCode.set(code, [id]);
    }
    for (const [code, ids] of byCode) this.tell(s, ids, code);
  }

  /** Tells one session that these instructions ended, with the code that says why; forgets them as in flight. */
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
    this.o.freed?.(s.node.id);
  }

  private async read(): Promise<void> {
    if (this.seq === null) {
      const { seq: end } = await this.o.store.cancellationsSince(null);
      this.seedEnd = end;
      this.seq = Math.max(0, end - REMEMBER);
    }
    for (;;) {
      const { seq, items } = await this.o.store.cancellationsSince(this.seq, PAGE);
      this.seq = Math.max(this.seq, seq);
      this.deliver(items);
      if (items.length < PAGE) return;
    }
  }

  private deliver(items: readonly Cancellation[]): void {
    // One event per node and code: a quorum's withdraw of many instructions to one node is one frame.
    const batches = new Map<Session, Map<string, string[]>>();
    for (const c of items) {
      this.recent.delete(c.instructionId);
      this.recent.set(c.instructionId, c.code);
      if (this.recent.size > REMEMBER) this.recent.delete(this.recent.keys().next().value!);
      const s = this.o.peers.get(c.nodeId);
      if (!s?.ready) continue;
      // Ended before this replica started: a session here said hello before this entry was read back (its
      // hello found nothing to cancel yet); tell it only of ids it says it still holds.
      if (c.seq <= this.seedEnd && !s.inflight.has(c.instructionId)) continue;
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
