import { isFleetlinkError } from "../protocol/errors.ts";
import { NodeMethods, type WireReply } from "../protocol/wire.ts";
import type { Channel, Logger } from "../stream/channel.ts";
import { type BackoffPolicy, backoffDelay } from "../util/backoff.ts";
import { startSpan, type TraceSpan } from "../util/tracing.ts";

export interface OutboxOptions {
  /** The live channel to a hub, if any; replies wait for one. */
  channel: () => Channel | null;
  /** Timeout for one reply send before it is retried, in ms. */
  timeoutMs: number;
  /** Retry schedule of an unacknowledged reply. */
  retry: BackoffPolicy;
  /** Acknowledged replies remembered (by instruction id), so a redelivered instruction gets the same reply. */
  remember: number;
  log: Logger;
}

interface Outgoing {
  reply: WireReply;
  attempt: number;
  sending: boolean;
  timer?: ReturnType<typeof setTimeout>;
  /** `fleetlink.reply`, from queued to acknowledged (traced replies, with OpenTelemetry). */
  span?: TraceSpan;
}

/**
 * A node's replies on their way to the hub: each is sent, and resent with backoff (across reconnects and
 * replicas) until a hub acknowledges it or refuses it for good. Acknowledged replies are remembered, so an
 * instruction redelivered after its reply was stored is answered again instead of run twice.
 */
export class Outbox {
  private readonly o: OutboxOptions;
  private readonly waiting = new Map<string, Outgoing>(); // by instruction id
  private readonly completed = new Map<string, WireReply>(); // by instruction id, oldest first
  private drainedCb: (() => void) | undefined;
  private closed = false;

  constructor(o: OutboxOptions) {
    this.o = o;
  }

  /** Replies not yet acknowledged. */
  get size(): number {
    return this.waiting.size;
  }

  /** Instruction ids whose reply is not yet acknowledged. */
  keys(): IterableIterator<string> {
    return this.waiting.keys();
  }

  has(instructionId: string): boolean {
    return this.waiting.has(instructionId);
  }

  /** The acknowledged reply to this instruction, if remembered. */
  done(instructionId: string): WireReply | undefined {
    return this.completed.get(instructionId);
  }

  /** Sends a reply (once per instruction: a second reply to the same instruction is ignored). */
  queue(reply: WireReply): void {
    if (this.waiting.has(reply.replyTo)) return;
    const out: Outgoing = { reply, attempt: 0, sending: false };
    if (reply.traceparent)
      out.span = startSpan("fleetlink.reply", {
        parent: reply.traceparent,
        kind: "producer",
        attributes: { "fleetlink.instruction": reply.replyTo },
      });
    this.waiting.set(reply.replyTo, out);
    this.send(out, false);
  }

  /**
   * Forgets the reply to this instruction if it waits (the hub says the instruction ended: it would be refused).
   * Returns whether one waited.
   */
  drop(instructionId: string): boolean {
    const out = this.waiting.get(instructionId);
    if (!out) return false;
    clearTimeout(out.timer);
    out.span?.end("dropped: the instruction ended");
    this.waiting.delete(instructionId);
    if (this.waiting.size === 0) this.drainedCb?.();
    return true;
  }

  /** A new connection is live: send everything waiting now rather than at its next retry. */
  flush(): void {
    for (const out of this.waiting.values()) this.send(out, true);
  }

  /** Resolves when nothing waits, or at once if nothing does. */
  drained(): Promise<void> {
    if (this.waiting.size === 0) return Promise.resolve();
    return new Promise((r) => {
      this.drainedCb = r;
    });
  }

  /** Stops every retry timer (the agent stopped). */
  close(): void {
    this.closed = true;
    for (const out of this.waiting.values()) {
      clearTimeout(out.timer);
      out.span?.end("agent stopped before the reply was acknowledged");
    }
  }

  private send(out: Outgoing, now: boolean): void {
    if (this.closed || out.sending || !this.waiting.has(out.reply.replyTo)) return;
    if (now) clearTimeout(out.timer);
    const ch = this.o.channel();
    if (!ch?.isOpen) return; // sent again at the next flush
    out.sending = true;
    ch.request(NodeMethods.reply, out.reply, { timeoutMs: this.o.timeoutMs }).then(
      () => this.settle(out),
      (e: unknown) => {
        out.sending = false;
        if (isFleetlinkError(e) && e.definite) {
          this.o.log.warn({ err: e.message, instruction: out.reply.replyTo }, "reply refused");
          this.settle(out, e);
          return;
        }
        // A send that failed because the agent stopped is not retried (no timer outlives close()).
        if (!this.closed)
          out.timer = setTimeout(() => this.send(out, false), backoffDelay(this.o.retry, out.attempt++));
      },
    );
  }

  private settle(out: Outgoing, refused?: unknown): void {
    out.sending = false;
    out.span?.end(refused);
    out.span = undefined;
    clearTimeout(out.timer);
    this.waiting.delete(out.reply.replyTo);
    this.completed.set(out.reply.replyTo, out.reply);
    while (this.completed.size > this.o.remember) this.completed.delete(this.completed.keys().next().value!);
    if (this.waiting.size === 0) this.drainedCb?.();
  }
}
