import { FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import { fromWireError, type WireError } from "../protocol/frames.ts";
import { newId } from "../protocol/ids.ts";
import { MAX_CALLS_PER_PUSH } from "../protocol/limits.ts";
import { checkTraceparent } from "../protocol/trace-context.ts";
import { RunMethods, type WireResult } from "../protocol/wire.ts";
import type { Channel, Logger } from "../stream/channel.ts";
import { loadOtel, otelTried, startSpan } from "../util/tracing.ts";
import { checkNodesGiven } from "./errors.ts";
import type { HubClient } from "./http.ts";
import type { ReplyStream } from "./run-stream.ts";

/** Binary data in payloads (blobs.ts): encoded before a push, decoded in each reply before the user sees it. */
export interface PayloadCodec {
  /** `signal` ends the uploads of the payload's blobs (the call's own signal). */
  encode(payload: unknown, signal?: AbortSignal): Promise<unknown>;
  decode(result: WireResult): Promise<WireResult>;
}

/** One node's instruction of a push and the wait for its reply. */
export interface Wait {
  id: string;
  dst: string;
  result: Promise<WireResult>;
}

export interface PushOptions {
  ttlMs: number;
  holdWhileOffline?: boolean;
  groupId?: string;
  /** Epoch ms bounding the push request itself, failover included. */
  deadline?: number;
  signal?: AbortSignal;
  /**
   * W3C trace context of the push; INVALID_ARGUMENT naming `traceparent` if malformed. (Default: the active
   * OpenTelemetry span's, when `@opentelemetry/api` is installed and a span is active)
   */
  traceparent?: string;
}

interface Outgoing {
  items: unknown[];
  timeoutMs: number;
  done: (r: { error?: WireError }) => void;
  fail: (e: unknown) => void;
}

/**
 * Puts a run's instructions into the hub: over the run stream when it is up (no HTTP request per call, and
 * concurrent calls share one frame), over HTTP with failover when it is not; and takes back instructions
 * whose call ended before they were delivered.
 */
export class Pusher {
  private readonly runId: string;
  private readonly http: HubClient;
  private readonly replies: ReplyStream;
  private readonly log: Logger;
  private outgoing: Outgoing[] = [];
  private readonly codec: PayloadCodec | undefined;

  constructor(runId: string, http: HubClient, replies: ReplyStream, log: Logger, codec?: PayloadCodec) {
    this.codec = codec;
    this.runId = runId;
    this.http = http;
    this.replies = replies;
    this.log = log;
  }

  /**
   * Pushes one instruction per node and returns the waits for their replies (registered before the push).
   * With OpenTelemetry, inside a `fleetlink.push` span whose context the instructions carry.
   */
  async push(nodes: readonly string[], method: string, payload: unknown, opts: PushOptions): Promise<Wait[]> {
    checkNodesGiven(nodes, method);
    const given = checkTraceparent("traceparent", opts.traceparent);
    // The first push loads the API (if installed); the caller's active context survives the await.
    if (!otelTried()) await loadOtel();
    const span = startSpan("fleetlink.push", {
      parent: given,
      orActive: true,
      kind: "producer",
      attributes: {
        "fleetlink.run": this.runId,
        "fleetlink.method": method,
        "fleetlink.nodes": nodes.length,
      },
    });
    try {
      const waits = await this.pushTraced(nodes, method, payload, opts, span?.traceparent ?? given);
      span?.end();
      return waits;
    } catch (e) {
      span?.end(e);
      throw e;
    }
  }

  private async pushTraced(
    nodes: readonly string[],
    method: string,
    payload: unknown,
    opts: PushOptions,
    traceparent: string | undefined,
  ): Promise<Wait[]> {
    // Once per push, not per node: a broadcast of one buffer uploads it once.
    if (this.codec) payload = await this.codec.encode(payload, opts.signal);
    const groupId = opts.groupId ?? newId();
    const trace = traceparent ? { traceparent } : {};
    const items = nodes.map((dst) => ({
      id: newId(),
      dst,
      method,
      payload,
      ttlMs: opts.ttlMs,
      groupId,
      ...trace,
    }));
    const codec = this.codec;
    const waits = items.map((it) => {
      const raw = this.replies.expect(it.id);
      if (!codec) return { id: it.id, dst: it.dst, result: raw };
      // Like `expect`'s own promise: a wait whose push failed is failed and never read, which is not an error.
      const result = raw.then((r) => codec.decode(r));
      result.catch(() => {});
      return { id: it.id, dst: it.dst, result };
    });
    const bound = { deadline: opts.deadline, signal: opts.signal };
    const body = items.map((it) => (opts.holdWhileOffline ? { ...it, holdWhileOffline: true } : it));
    try {
      // Over the run stream when it is up. If the stream cannot carry it (closed, no answer in time), the push
      // may or may not have happened: HTTP then retries it, and recognises a push that did happen by its ids,
      // as after any failover.
      const live = this.replies.live;
      // A silent replica must not use up the deadline: the stream gets the share one replica would get.
      const remaining = (opts.deadline ?? Number.POSITIVE_INFINITY) - Date.now();
      const budget = Math.min(
        this.http.requestTimeoutMs,
        Math.max(remaining / (this.http.hubs.length + 1), Math.min(remaining, 250)),
      );
      const answer =
        live?.channel.isOpen && !opts.signal?.aborted && remaining > 0
          ? await this.overStream(live.channel, body, budget).catch(() => {
              // No answer: suspect the stream's replica (probe it) and let HTTP start elsewhere.
              this.replies.probe();
              if (this.http.current === live.hub) this.http.rotate(live.hub);
              return null;
            })
          : null;
      if (answer?.error) throw fromWireError(answer.error);
      if (!answer)
        await this.http.request("POST", `/v1/runs/${this.runId}/instructions`, { items: body }, bound);
    } catch (e) {
      // A replica that committed the push and died before answering: the retry on another replica finds the
      // (coordinator-chosen) ids taken. If every one of them exists, the push did happen.
      if (isFleetlinkError(e, "INVALID_ARGUMENT") && /^items\[\d+\]\.id$/.test(e.field ?? "")) {
        const found = await this.http
          .request<{ instructions: unknown[] }>(
            "POST",
            `/v1/runs/${this.runId}/instructions/query`,
            { ids: items.map((i) => i.id) },
            bound,
          )
          .catch(() => ({ instructions: [] }));
        if (found.instructions.length === items.length) return waits;
      }
      for (const w of waits) this.replies.fail(w.id, e);
      // Timed out, cut off or cancelled mid-request: the push may have happened. It is withdrawn, so a call
      // reported as failed does not run later.
      if (!isFleetlinkError(e) || !e.definite || e.kind === "CANCELLED")
        void this.withdraw(waits.map((w) => w.id));
      throw e;
    }
    return waits;
  }

  /** Stops waiting for these instructions and withdraws the ones not yet delivered. */
  async cancel(ids: readonly string[], reason: FleetlinkError): Promise<void> {
    const open = ids.filter((id) => this.replies.fail(id, reason));
    if (open.length > 0) await this.withdraw(open);
  }

  /**
   * One call's push over the run stream, in a frame shared with every call pushed in the same turn of the
   * event loop. Resolves with the hub's answer for this call (`error`: the hub refused it, definitely or
   * not, as over HTTP); rejects when the frame got no answer.
   */
  private overStream(ch: Channel, items: unknown[], timeoutMs: number): Promise<{ error?: WireError }> {
    return new Promise((done, fail) => {
      this.outgoing.push({ items, timeoutMs, done, fail });
      if (this.outgoing.length > 1) return;
      queueMicrotask(() => {
        // Frames of at most MAX_CALLS_PER_PUSH calls: the hub refuses a bigger one whole (and a stream that keeps
        // sending refused frames is closed with 1008).
        while (this.outgoing.length > 0) this.sendPush(ch, this.outgoing.splice(0, MAX_CALLS_PER_PUSH));
      });
    });
  }

  private sendPush(ch: Channel, batch: Outgoing[]): void {
    const timeout = Math.max(1, Math.min(...batch.map((b) => b.timeoutMs)));
    ch.request(
      RunMethods.push,
      { calls: batch.map((b) => ({ items: b.items })) },
      { timeoutMs: timeout },
    ).then(
      (res) => {
        const results = (res as { results?: { error?: WireError }[] } | null)?.results;
        for (const [i, b] of batch.entries()) {
          const r = results?.[i];
          if (r) b.done(r);
          else b.fail(new FleetlinkError("STREAM_CLOSED", "push answered without this call's result"));
        }
      },
      (e: unknown) => {
        for (const b of batch) b.fail(e);
      },
    );
  }

  private async withdraw(ids: string[]): Promise<void> {
    try {
      // Over the run stream when it is up (off the HTTP path); over HTTP, with failover, when it is not.
      const ch = this.replies.live?.channel;
      if (ch?.isOpen) {
        const done = await ch
          .request(RunMethods.withdraw, { ids }, { timeoutMs: this.http.requestTimeoutMs })
          .then(
            () => true,
            () => false,
          );
        if (done) return;
      }
      await this.http.request("POST", `/v1/runs/${this.runId}/instructions/withdraw`, { ids });
    } catch (e) {
      this.log.debug({ err: String(e) }, "withdraw failed; the instructions will expire");
    }
  }
}
