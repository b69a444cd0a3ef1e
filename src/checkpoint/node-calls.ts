import { FleetlinkError } from "../protocol/errors.ts";
import { fromWireError } from "../protocol/frames.ts";
import { newId } from "../protocol/ids.ts";
import type { Reply } from "../protocol/types.ts";
import { decodePayload, encodePayload } from "../protocol/wire.ts";
import type { Store } from "../store/store.ts";
import type { Logger } from "../stream/channel.ts";
import { PendingCalls } from "../stream/pending.ts";
import { Coalesced } from "../util/coalesce.ts";

export type CallResult = { ok: true; value: unknown } | { ok: false; error: FleetlinkError };

export interface NodeCall {
  dst: string;
  method: string;
  payload: unknown;
}

export interface NodeCallsOptions {
  store: Store;
  /** Wakes this replica's node streams after instructions were pushed. */
  changed: () => void;
  log: Logger;
  /**
   * A re-read of the replies still awaited, in ms: only a fallback against a missed change notification (a
   * PostgreSQL LISTEN connection that was down when the reply committed); replies normally arrive through
   * the store's watch. (Default: the store's lease length, at most 2000)
   */
  recheckMs?: number;
  /**
   * How long past a call's TTL to wait for the store's sweep to answer it (MESSAGE_EXPIRED, NODE_UNAVAILABLE)
   * before this replica judges it itself, in ms. (Default: 2000)
   */
  graceMs?: number;
}

/** What a PendingCalls timeout rejects with: the call outlived its TTL and grace. */
const LATE = Symbol("late");

/**
 * The hub calling nodes the way a coordinator does: each call is an instruction pushed through the store (so
 * it reaches the node on whichever replica holds its stream), and waits in a PendingCalls map. Replies are
 * read back by id when the store says something changed (`watch`: a node stream here stored a reply, or
 * another replica committed), coalesced so that a burst of changes costs one read — never on a timer, but
 * for the rare `recheckMs` fallback. A reply is read by id (a coordinator's run stream may have claimed it
 * first), then claimed, so none is left for a run stream.
 */
/** Longest wait for a reply whose notification was lost, in ms. */
const DEFAULT_RECHECK_MS = 2000;

export class NodeCalls {
  private readonly o: NodeCallsOptions;
  private readonly pending = new PendingCalls<CallResult>();
  /** Run of each awaited instruction, for the read-back. */
  private readonly runOf = new Map<string, string>();
  private readonly readBack: Coalesced;
  private unwatch: (() => void) | undefined;
  private recheck: ReturnType<typeof setInterval> | undefined;

  constructor(o: NodeCallsOptions) {
    this.o = o;
    this.readBack = new Coalesced(
      () => this.read(),
      (e) => o.log.warn({ err: String(e) }, "checkpoint reply read-back failed"),
      // Every change anywhere in the fleet triggers one; a busy fleet must not turn that into a read per
      // round trip for the whole of a long checkpoint.
      { minIntervalMs: 10 },
    );
    // Watching from the start, not per call: a PostgreSQL watch is a LISTEN connection that takes a moment
    // to open, and a reply committed on another replica before it listened would wait for the re-check.
    // With no call waiting, a notification costs nothing (no read).
    this.listen();
  }

  private listen(): void {
    this.unwatch ??= this.o.store.watch(() => {
      if (this.pending.size > 0) this.readBack.trigger();
    });
  }

  /**
   * Sends one instruction per call (TTL `timeoutMs`) and resolves with every result, in order; `onResult` is
   * told of each as it arrives. A call the sweep has not answered `graceMs` after its TTL is withdrawn if
   * still undelivered and fails NODE_UNAVAILABLE (its node is offline) or MESSAGE_EXPIRED.
   */
  async call(
    runId: string,
    calls: NodeCall[],
    timeoutMs: number,
    onResult?: (index: number, r: CallResult) => void,
  ): Promise<CallResult[]> {
    const items = calls.map((c) => ({
      id: newId(),
      dst: c.dst,
      method: c.method,
      payload: encodePayload(c.payload),
      ttlMs: timeoutMs,
      src: "hub",
    }));
    // Waiting before the push: no reply can be missed between the push and the wait.
    const waits = items.map((i) => {
      this.runOf.set(i.id, runId);
      return this.pending
        .add(i.id)
        .catch((e: unknown): CallResult | typeof LATE =>
          e instanceof FleetlinkError && e.kind === "MESSAGE_EXPIRED"
            ? LATE
            : { ok: false, error: asFleetlinkError(e) },
        )
        .finally(() => this.runOf.delete(i.id));
    });
    this.listen(); // again after a stop()
    this.startRecheck();
    try {
      await this.o.store.pushInstructions(runId, items);
    } catch (e) {
      for (const i of items) this.pending.fail(i.id, e);
      await Promise.all(waits);
      this.release();
      throw e;
    }
    this.o.changed();
    // The TTL counts from the push, as the store's does: a push held up by a slow store is not held against
    // the node (judged late while its instruction may still be delivered and run).
    const expire = setTimeout(
      () => {
        for (const i of items)
          this.pending.fail(
            i.id,
            new FleetlinkError("MESSAGE_EXPIRED", `no answer to ${i.id} within ${timeoutMs} ms and grace`),
          );
      },
      timeoutMs + (this.o.graceMs ?? 2000),
    );
    const results = await Promise.all(
      waits.map((w, k) =>
        w.then((r) => {
          if (r !== LATE) onResult?.(k, r);
          return r;
        }),
      ),
    );
    clearTimeout(expire);
    this.release();
    const answered = items.filter((_, k) => results[k] !== LATE).map((i) => i.id);
    if (answered.length > 0)
      await this.o.store
        .claimReplies({ runId, instructionIds: answered, limit: answered.length })
        .catch(() => {});
    const late = items.flatMap((i, k) => (results[k] === LATE ? [{ i, k }] : []));
    if (late.length > 0) {
      const judged = await this.judgeLate(
        runId,
        late.map((l) => l.i),
        timeoutMs,
      );
      for (const [n, { k }] of late.entries()) {
        results[k] = judged[n]!;
        onResult?.(k, judged[n]!);
      }
    }
    return results as CallResult[];
  }

  /** Calls past their TTL and grace: a last read, then withdrawn if undelivered and failed for the reason. */
  private async judgeLate(
    runId: string,
    late: { id: string; dst: string }[],
    timeoutMs: number,
  ): Promise<CallResult[]> {
    const { store } = this.o;
    const found = new Map<string, CallResult>();
    for (const r of await store
      .getReplies(
        runId,
        late.map((i) => i.id),
      )
      .catch(() => []))
      found.set(r.replyTo, toResult(r));
    if (found.size > 0)
      await store
        .claimReplies({ runId, instructionIds: [...found.keys()], limit: found.size })
        .catch(() => {});
    const missing = late.filter((i) => !found.has(i.id));
    if (missing.length > 0)
      await store
        .withdrawInstructions(
          runId,
          missing.map((i) => i.id),
        )
        .catch(() => []);
    const now = await store.now();
    const out: CallResult[] = [];
    for (const i of late) {
      const got = found.get(i.id);
      if (got) {
        out.push(got);
        continue;
      }
      const node = await store.getNode(i.dst).catch(() => null);
      const offline = !node || node.status === "unregistered" || (node.onlineUntil ?? 0) <= now;
      out.push({
        ok: false,
        error: offline
          ? new FleetlinkError(
              "NODE_UNAVAILABLE",
              `node ${i.dst} is offline: no reply within ${timeoutMs} ms`,
            )
          : new FleetlinkError("MESSAGE_EXPIRED", `node ${i.dst} did not reply within ${timeoutMs} ms`),
      });
    }
    return out;
  }

  /** Reads back the replies of every awaited call and hands each to its call. */
  private async read(): Promise<void> {
    const byRun = new Map<string, string[]>();
    for (const [id, runId] of this.runOf) {
      if (!this.pending.has(id)) continue;
      const ids = byRun.get(runId);
      if (ids) ids.push(id);
      else byRun.set(runId, [id]);
    }
    // One run's failed read must not hold back the others' replies (it is retried on the next change).
    let failed: unknown;
    for (const [runId, ids] of byRun) {
      try {
        for (const r of await this.o.store.getReplies(runId, ids))
          this.pending.deliver(r.replyTo, toResult(r));
      } catch (e) {
        failed ??= e;
      }
    }
    if (failed !== undefined) throw failed;
  }

  /** Starts the fallback re-check while calls wait (and only then). */
  private startRecheck(): void {
    if (this.recheck) return;
    this.recheck = setInterval(
      () => this.readBack.trigger(),
      // Bounds the cost of a lost notification (a failed NOTIFY, say); it runs only while calls wait.
      this.o.recheckMs ?? Math.min(this.o.store.options.leaseMs, DEFAULT_RECHECK_MS),
    );
    this.recheck.unref();
  }

  private release(): void {
    if (this.pending.size > 0) return;
    clearInterval(this.recheck);
    this.recheck = undefined;
  }

  /** Fails every waiting call (the hub is stopping) and stops listening until the next call. */
  stop(): void {
    this.pending.closeAll(new FleetlinkError("STREAM_CLOSED", "hub stopping"));
    this.unwatch?.();
    this.unwatch = undefined;
    clearInterval(this.recheck);
    this.recheck = undefined;
  }
}

const toResult = (r: Reply): CallResult =>
  r.error ? { ok: false, error: fromWireError(r.error) } : { ok: true, value: decodePayload(r.payload) };

const asFleetlinkError = (e: unknown): FleetlinkError =>
  e instanceof FleetlinkError ? e : new FleetlinkError("INTERNAL", String(e), { cause: e });
