import { CloseCode } from "../../protocol/close-codes.ts";
import { FleetlinkError } from "../../protocol/errors.ts";
import { toWireError } from "../../protocol/frames.ts";
import { checkStreamRequest } from "../../protocol/stream-schemas.ts";
import type { Instruction, Reply } from "../../protocol/types.ts";
import { RunEvents, RunMethods, toWireResult } from "../../protocol/wire.ts";
import type { NewInstruction, Store } from "../../store/store.ts";
import { Channel, type Logger } from "../../stream/channel.ts";
import type { Transport } from "../../stream/transport.ts";
import { Coalesced } from "../../util/coalesce.ts";
import { loadOtel } from "../../util/tracing.ts";
import { parseItems, parsePush } from "./push-body.ts";
import { DEFER_ACK_MS } from "./session.ts";
import { pushSpan } from "./trace-spans.ts";

/** What a coordinator may ask over its run stream: the same operations as the HTTP routes, minus HTTP. */
export interface RunRequests {
  push(runId: string, items: NewInstruction[]): Promise<Instruction[]>;
  withdraw(runId: string, ids: string[]): Promise<string[]>;
}

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
  private readonly maxFrame: number;
  private readonly requests: RunRequests | undefined;
  /** Replies stored already claimed for a stream here, sent together once this turn of the loop ends. */
  private outbox = new Map<string, Reply[]>();
  private flushing = false;

  /** `maxFrameBytes`: replies are sent in frames no larger than this (each reply fits in one). */
  constructor(store: Store, log: Logger, maxFrameBytes: number, requests?: RunRequests) {
    // Spans need the API loaded before the first traced push arrives (a no-op when it is not installed).
    void loadOtel();
    this.store = store;
    this.log = log;
    this.maxFrame = maxFrameBytes;
    this.requests = requests;
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

  /** Whether a reply of this run can be stored claimed and sent by this replica (`send`). */
  holds(runId: string): boolean {
    const set = this.subs.get(runId);
    if (!set) return false;
    for (const c of set) if (c.isOpen) return true;
    return false;
  }

  /**
   * Sends a reply stored already claimed for this replica (see `holds`). Replies of one turn of the event loop
   * go out in one frame per run. A stream that died meanwhile loses them the way a claimed push is lost: the
   * coordinator reads them back when it reconnects.
   */
  send(reply: Reply): void {
    const q = this.outbox.get(reply.runId);
    if (q) q.push(reply);
    else this.outbox.set(reply.runId, [reply]);
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => {
      this.flushing = false;
      const out = this.outbox;
      this.outbox = new Map();
      for (const [runId, replies] of out) {
        const ch = this.newest(runId);
        if (!ch) {
          this.log.debug(
            { run: runId, replies: replies.length },
            "run stream gone; the coordinator reads back",
          );
          continue;
        }
        for (const frame of framed(replies, this.maxFrame))
          ch.emit(RunEvents.replies, frame.map(toWireResult));
      }
    });
  }

  /** The newest open stream: after a partition the older one may be a dead socket the hub has not noticed yet. */
  private newest(runId: string): Channel | undefined {
    const chans = this.subs.get(runId);
    return chans && [...chans].reverse().find((c) => c.isOpen);
  }

  private async onRequest(runId: string, method: string, body: unknown): Promise<unknown> {
    const r = this.requests;
    if (!r)
      throw new FleetlinkError("INVALID_ARGUMENT", `no method ${method} on this stream`, { field: "m" });
    if (method === RunMethods.push) {
      const calls = parsePush(body);
      const results = await Promise.all(
        calls.map(async (c) => {
          try {
            const items = parseItems(c.items, "items");
            const span = pushSpan(runId, items);
            const pushed = await r.push(runId, items).catch((e: unknown) => {
              span?.end(e);
              throw e;
            });
            span?.end();
            return { instructions: pushed.map((i) => ({ id: i.id, dst: i.dst, expiresAt: i.expiresAt })) };
          } catch (e) {
            return { error: toWireError(e) };
          }
        }),
      );
      return { results };
    }
    if (method === RunMethods.withdraw) {
      checkStreamRequest("run", method, body);
      return { withdrawn: await r.withdraw(runId, (body as { ids: string[] }).ids) };
    }
    throw new FleetlinkError("INVALID_ARGUMENT", `no method ${method} on this stream`, { field: "m" });
  }

  accept(runId: string, transport: Transport): Channel {
    const ch = new Channel(transport, {
      log: this.log,
      onRequest: (method, body) => this.onRequest(runId, method, body),
      // A push's receipt rides with the first replies (the coordinator waits for those, registered before the
      // push), or goes alone after DEFER_ACK_MS.
      deferAnswers: { methods: [RunMethods.push], maxDelayMs: DEFER_ACK_MS },
    });
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
    for (const runId of this.subs.keys()) {
      const ch = this.newest(runId);
      if (!ch) continue;
      for (;;) {
        const replies = await this.store.claimReplies({ runId, limit: 500 });
        if (replies.length === 0) break;
        for (const frame of framed(replies, this.maxFrame))
          ch.emit(RunEvents.replies, frame.map(toWireResult));
        if (replies.length < 500) break;
      }
    }
  }

  closeAll(): void {
    for (const set of this.subs.values())
      for (const ch of set) ch.close(CloseCode.goingAway, "hub shutting down");
  }
}

/** Splits replies into groups whose encoding stays under `max` bytes (each reply fits in one frame alone). */
const framed = (items: Reply[], max: number): Reply[][] => {
  const out: Reply[][] = [];
  let cur: Reply[] = [];
  let size = 0;
  for (const it of items) {
    const n = it.payload.byteLength + (it.error?.message.length ?? 0) + 512;
    if (cur.length > 0 && size + n > max) {
      out.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(it);
    size += n;
  }
  if (cur.length > 0) out.push(cur);
  return out;
};
