import type { Instruction } from "../../protocol/types.ts";
import { NodeMethods, toWireInstruction, type WireInstruction } from "../../protocol/wire.ts";
import type { NewInstruction, Store } from "../../store/store.ts";
import type { Logger } from "../../stream/channel.ts";
import type { PeerTable } from "../../stream/peers.ts";
import { Coalesced } from "../../util/coalesce.ts";
import { loadOtel } from "../../util/tracing.ts";
import type { Session } from "./session.ts";
import { claimSpans, deliverSpan } from "./trace-spans.ts";

/** Most nodes a claimable scan lists before the replica claims for every node it holds instead. */
const SCAN_LIMIT = 10_000;
/** Payload bytes past which an `instructions` event is cut: well under the 8 MiB a peer's frame may have. */
const BATCH_BYTES = 1024 * 1024;

/** Instructions to send, grouped by session in the order they were claimed. */
class Outgoing {
  readonly bySession = new Map<Session, Instruction[]>();
  add(s: Session, ins: Instruction): void {
    const list = this.bySession.get(s);
    if (list) list.push(ins);
    else this.bySession.set(s, [ins]);
  }
}

export interface DispatcherOptions {
  store: Store;
  /** The node streams here that said hello, by node id. */
  peers: PeerTable<Session>;
  /** Instructions in flight per node before the hub waits for replies. */
  maxInflight: number;
  /** How long a node may take to acknowledge an instruction frame, in ms. */
  deliveryTimeoutMs: number;
  log: Logger;
}

/**
 * Claims instructions for the node streams of this replica in batched statements and sends them down their
 * streams; and the push fast path, which inserts a push's instructions already leased to a stream here.
 */
export class Dispatcher {
  private readonly o: DispatcherOptions;
  private readonly scanner: Coalesced;
  private readonly dirty = new Set<string>();
  private allDirty = false;
  private readonly claimer: Coalesced;
  /**
   * Sessions (by stream id) whose last claim found nothing more to claim, with nothing said since that could
   * have made more claimable for them: a freed slot of theirs needs no claim. Any wake but a freed slot's clears
   * the mark (a push left pending, a scan, a hello, another replica's change), so it never hides work.
   */
  private readonly drained = new WeakSet<Session>();
  /** Wakes per session, and of every session: a claim that raced one does not mark its session drained. */
  private readonly wakes = new WeakMap<Session, number>();
  private wakesOfAll = 0;

  constructor(o: DispatcherOptions) {
    this.o = o;
    void loadOtel();
    this.claimer = new Coalesced(
      () => this.dispatch(),
      (e) => o.log.warn({ err: String(e) }, "dispatch failed"),
    );
    this.scanner = new Coalesced(
      () => this.scan(),
      (e) => o.log.warn({ err: String(e) }, "claimable scan failed"),
    );
  }

  /** Stops claiming: a dispatch or scan asked for later does not run (the hub is closing). */
  close(): void {
    this.claimer.close();
    this.scanner.close();
  }

  /** Asks the dispatcher to claim for this node (or every connected node). */
  wake(nodeId?: string): void {
    if (nodeId === undefined) {
      this.allDirty = true;
      this.wakesOfAll++;
      for (const s of this.o.peers.values()) this.drained.delete(s);
    } else {
      const s = this.o.peers.get(nodeId);
      if (!s) return;
      this.dirty.add(nodeId);
      this.drained.delete(s);
      this.wakes.set(s, (this.wakes.get(s) ?? 0) + 1);
    }
    this.claimer.trigger();
  }

  /**
   * A slot of this node's stream came free (a reply stored, an instruction cancelled): claim for it, unless its
   * last claim left nothing behind and nothing since could have added any. A sequential call then costs its
   * push and its reply, not a third write that claims nothing.
   */
  freed(nodeId: string): void {
    const s = this.o.peers.get(nodeId);
    if (!s || this.drained.has(s)) return;
    this.dirty.add(nodeId);
    this.claimer.trigger();
  }

  /**
   * Something may have become claimable for nodes here that no push through this replica woke (another
   * replica's push or release, a lease that ran out): ask the store which nodes have claimable work, and
   * claim for those of them connected here, not for every node held.
   */
  wakeClaimable(): void {
    if (this.o.peers.size > 0) this.scanner.trigger();
  }

  private async scan(): Promise<void> {
    const ids = await this.o.store.claimableNodes(SCAN_LIMIT);
    // As many as asked for: there may be more the store did not list (a backlog across a huge fleet), and a node
    // left out every time would starve. Claim for every node held here instead.
    if (ids.length >= SCAN_LIMIT) this.wake();
    else for (const id of ids) this.wake(id);
  }

  /**
   * The push fast path: items for nodes whose stream is here and has room go to the store with this stream's
   * session as `leaseTo` (inserted already leased to it if it is still the node's current session), and
   * `settle` sends them down the stream as soon as the push committed: one transaction per push instead of
   * push, wake and claim. The rest wake the dispatcher as before. `settle(null)`: the push failed.
   */
  lease(items: readonly NewInstruction[]): {
    items: NewInstruction[];
    settle(pushed: readonly Instruction[] | null): void;
  } {
    const held: Session[] = [];
    const since = Date.now();
    const out = items.map((it) => {
      const s = this.o.peers.get(it.dst);
      if (!s?.ready || !s.channel.isOpen || s.inflight.size + s.reserved >= this.o.maxInflight) return it;
      s.reserved++;
      held.push(s);
      return { ...it, leaseTo: s.channel.id };
    });
    return {
      items: out,
      settle: (pushed) => {
        for (const s of held) s.reserved--;
        if (!pushed) return;
        // Leased by the push itself: the claim is the insert.
        claimSpans(pushed, since, "push");
        const orphaned = new Map<string, string>();
        const out = new Outgoing();
        for (const ins of pushed) {
          if (ins.state !== "leased") {
            this.wake(ins.dst);
            continue;
          }
          const s = this.o.peers.get(ins.dst);
          if (s?.channel.isOpen && s.channel.id === ins.leaseOwner) out.add(s, ins);
          else if (ins.leaseOwner) orphaned.set(ins.dst, ins.leaseOwner);
        }
        this.send(out);
        // The stream closed while the push committed: give its leases back now rather than after the lease.
        for (const [nodeId, owner] of orphaned)
          void this.o.store
            .releaseInstructions({ nodeId, owner })
            .catch((e) =>
              this.o.log.warn({ err: String(e), node: nodeId }, "release failed; leases will expire"),
            );
      },
    };
  }

  /**
   * Sends instructions leased to their sessions: one `instructions` event per session (and per ~1 MiB of
   * payload) to nodes that asked for it, else a request per instruction. Sent at once, in order, so a cancel
   * event written later always follows the instruction it names.
   */
  private send(out: Outgoing): void {
    for (const [s, list] of out.bySession) {
      for (const ins of list) s.inflight.add(ins.id);
      if (!s.instructionEvents) {
        for (const ins of list) this.request(s, ins);
        continue;
      }
      let items: WireInstruction[] = [];
      let bytes = 0;
      for (const ins of list) {
        if (items.length > 0 && bytes + ins.payload.byteLength > BATCH_BYTES) {
          s.channel.emit(NodeMethods.instructions, { items });
          items = [];
          bytes = 0;
        }
        items.push(toWireInstruction(ins));
        deliverSpan(ins)?.end();
        bytes += ins.payload.byteLength;
      }
      s.channel.emit(NodeMethods.instructions, { items });
    }
  }

  private request(s: Session, ins: Instruction): void {
    const span = deliverSpan(ins);
    s.channel
      .request(NodeMethods.instruction, toWireInstruction(ins), { timeoutMs: this.o.deliveryTimeoutMs })
      .then(
        () => span?.end(),
        (e: unknown) => {
          span?.end(e);
          throw e;
        },
      )
      .catch((e: unknown) => {
        // Not acknowledged: the stream is gone (release on close handles it) or the node is stuck (the lease
        // expires and the instruction is redelivered).
        this.o.log.debug({ err: String(e), instruction: ins.id }, "instruction not acknowledged");
      });
  }

  private async dispatch(): Promise<void> {
    const ids = this.allDirty ? this.o.peers.peers() : [...this.dirty];
    this.allDirty = false;
    this.dirty.clear();
    const byCapacity = new Map<number, Session[]>();
    for (const id of ids) {
      const s = this.o.peers.get(id);
      if (!s?.ready || !s.channel.isOpen) continue;
      const cap = this.o.maxInflight - s.inflight.size - s.reserved;
      if (cap <= 0) continue;
      const group = byCapacity.get(cap);
      if (group) group.push(s);
      else byCapacity.set(cap, [s]);
    }
    for (const [cap, held] of byCapacity) {
      const sessions = held.map((s) => ({ nodeId: s.node.id, sessionId: s.channel.id }));
      const before = held.map((s) => this.wakes.get(s) ?? 0);
      const allBefore = this.wakesOfAll;
      const since = Date.now();
      const got = await this.o.store.claimInstructions({ sessions, limit: cap });
      claimSpans(got, since, "claim");
      const claimed = new Map<string, number>();
      for (const ins of got) claimed.set(ins.dst, (claimed.get(ins.dst) ?? 0) + 1);
      held.forEach((s, i) => {
        // Fewer than asked: nothing else was claimable for it when the claim ran. A wake meanwhile may be news.
        const quiet = this.wakesOfAll === allBefore && (this.wakes.get(s) ?? 0) === before[i];
        if (quiet && (claimed.get(s.node.id) ?? 0) < cap) this.drained.add(s);
      });
      const orphaned = new Map<string, string>();
      const out = new Outgoing();
      for (const ins of got) {
        const s = this.o.peers.get(ins.dst);
        if (!s?.channel.isOpen || s.channel.id !== ins.leaseOwner) {
          if (ins.leaseOwner) orphaned.set(ins.dst, ins.leaseOwner);
          continue;
        }
        out.add(s, ins);
      }
      this.send(out);
      // The stream closed while we claimed: give its session's leases back now instead of waiting for them.
      for (const [nodeId, owner] of orphaned) await this.o.store.releaseInstructions({ nodeId, owner });
    }
  }
}
