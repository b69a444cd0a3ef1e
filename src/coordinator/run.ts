import WebSocket from "ws";
import { CloseCode } from "../protocol/close-codes.ts";
import { describeError, FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import { fromWireError, type WireError } from "../protocol/frames.ts";
import { newId } from "../protocol/ids.ts";
import type { Run as RunRecord } from "../protocol/types.ts";
import { RunEvents, RunMethods, type WireResult } from "../protocol/wire.ts";
import { Channel, type Logger } from "../stream/channel.ts";
import { Liveness, watchTransport } from "../stream/liveness.ts";
import { PendingCalls } from "../stream/pending.ts";
import { wsTransport } from "../stream/ws.ts";
import { Backoff } from "../util/backoff.ts";
import { NodeSet } from "./configuration.ts";
import { checkNodesGiven, DeadlineExceededError, IncompleteCallError } from "./errors.ts";
import type { HubClient } from "./http.ts";
import { type Quorum, quorumFunction } from "./quorum.ts";

export interface CallOptions {
  /** (Default: "majority") */
  quorum?: Quorum;
  /** Overall deadline in ms; nodes that have not answered by then count as failed. (Default: 30000) */
  timeoutMs?: number;
  /** Instruction TTL in ms. (Default: timeoutMs) */
  ttlMs?: number;
  signal?: AbortSignal;
}

export interface BroadcastOptions {
  /** Instruction TTL in ms: nodes offline now get the instruction if they reconnect within it. */
  ttlMs: number;
  /** Deadline for the push itself, failover included. (Default: ttlMs) */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface CallResult {
  /** Successful replies by node id. */
  replies: Map<string, unknown>;
  /** Failed nodes (handler errors, NODE_UNAVAILABLE, …) by node id. */
  errors: Map<string, FleetlinkError>;
}

export type StreamItem =
  | { node: string; ok: true; value: unknown }
  | { node: string; ok: false; error: FleetlinkError };

export interface RunHandleOptions {
  /**
   * The reply stream is pinged this often; a stream that has shown no sign of life (pong or message) for
   * 1.5 intervals is replaced by one to the next replica, so a dead stream is noticed within 2 intervals.
   * (Default: 2000)
   */
  pingIntervalMs?: number;
  /**
   * While the reply stream is down, and for `staleStreamMs` after it was replaced, open calls read their
   * replies back this often. (Default: 250)
   */
  recoveryPollMs?: number;
  /**
   * How long after a lost stream the hub may still push replies into the old connection: until its own
   * ping notices the connection is dead (twice the hub's pingIntervalMs, 10 s by default). (Default: 30000)
   */
  staleStreamMs?: number;
  /** Called once, when the handle is closed. */
  onClose?: (run: RunHandle) => void;
}

/** Where the reply stream is: connecting to or connected to a replica, or closed with the handle. */
export type ReplyStreamState =
  | { state: "connecting"; hub: string }
  | { state: "connected"; hub: string }
  | { state: "closed" };

/** One run, seen from its coordinator: a reply stream from the hub, and calls over configurations. */
export class RunHandle {
  readonly id: string;
  readonly http: HubClient;
  private readonly pending = new PendingCalls<WireResult>();
  private readonly since = new Map<string, number>();
  private channel: Channel | null = null;
  private ws: WebSocket | null = null;
  private wsHub: string | null = null;
  /** Ends the current stream attempt (and schedules the next); null between attempts. */
  private abandon: ((why: string) => void) | null = null;
  /** Pings the current stream now and abandons it if no pong comes back soon; null unless connected. */
  private probe: (() => void) | null = null;
  private closed = false;
  /** Reconnects of the reply stream: quick, since calls fall back to polling meanwhile. */
  private readonly reconnects = new Backoff({ initialMs: 50, maxMs: 2000 });
  private reconnect: ReturnType<typeof setTimeout> | undefined;
  private poll: ReturnType<typeof setTimeout> | undefined;
  private recovering = false;
  private recoverAgain = false;
  private staleUntil = 0;
  private readonly pingIntervalMs: number;
  /** How long a probe (a ping sent on suspicion) waits for its pong. */
  private readonly probeMs: number;
  private readonly liveness: Liveness;
  private readonly recoveryPollMs: number;
  private readonly staleStreamMs: number;
  private readonly onClosed: ((run: RunHandle) => void) | undefined;
  private readonly unsubscribe: () => void;
  private readonly log: Logger;
  private connected!: Promise<void>;
  private markConnected!: () => void;

  constructor(run: RunRecord, http: HubClient, log: Logger, opts: RunHandleOptions = {}) {
    this.id = run.id;
    this.http = http;
    this.log = log;
    this.pingIntervalMs = opts.pingIntervalMs ?? 2000;
    this.probeMs = Math.min(this.pingIntervalMs, 500);
    this.liveness = new Liveness({
      probeAfterMs: this.pingIntervalMs,
      dropAfterMs: 1.5 * this.pingIntervalMs,
      checkMs: Math.max(10, Math.floor(this.pingIntervalMs / 4)),
    });
    this.recoveryPollMs = opts.recoveryPollMs ?? 250;
    this.staleStreamMs = opts.staleStreamMs ?? 30_000;
    this.onClosed = opts.onClose;
    // The replica our stream is on does not answer HTTP: its stream is most likely dead as well. Replace it
    // now rather than at the next missed pong; on a mere suspicion, ask it for a pong now and meanwhile read
    // replies back (a push retried on another replica is answered into this stream).
    this.unsubscribe = http.onUnreachable((hub, _err, certain) => {
      if (hub !== this.wsHub) return;
      if (certain) return this.abandon?.(`hub ${hub} unreachable over HTTP`);
      this.staleUntil = Math.max(this.staleUntil, Date.now() + this.probeMs + this.recoveryPollMs);
      this.schedulePoll();
      this.probe?.();
    });
    this.resetConnected();
    this.connect();
    // Until the first stream is up, replies are read back like while it is down.
    this.schedulePoll();
  }

  private resetConnected(): void {
    this.connected = new Promise((r) => {
      this.markConnected = r;
    });
  }

  /** Resolves once the reply stream is connected. */
  ready(): Promise<void> {
    return this.connected;
  }

  get replyStream(): ReplyStreamState {
    if (this.closed || !this.wsHub) return { state: "closed" };
    return { state: this.channel ? "connected" : "connecting", hub: this.wsHub };
  }

  /** Calls (and broadcast nodes) still waiting for a reply. */
  get pendingCalls(): number {
    return this.pending.size;
  }

  private connect(): void {
    this.reconnect = undefined;
    if (this.closed) return;
    const hub = this.http.current;
    const ws = new WebSocket(`${hub.replace(/^http/, "ws")}/v1/runs/${this.id}/stream`, {
      headers: { authorization: this.http.authHeader },
      handshakeTimeout: Math.min(this.http.requestTimeoutMs, Math.max(1000, 2 * this.pingIntervalMs)),
    });
    this.ws = ws;
    this.wsHub = hub;
    let gone = false;
    // `dead`: the replica did not answer at all (no pong, refused, reset), so HTTP requests waiting on it
    // are cut short as well; otherwise the hub ended the stream itself and only the next one is tried.
    const lost = (why: string, dead = false) => {
      if (gone) return;
      gone = true;
      ws.terminate();
      if (this.ws !== ws) return;
      this.ws = null;
      this.wsHub = null;
      this.channel = null;
      this.abandon = null;
      this.probe = null;
      this.resetConnected();
      if (this.closed) return;
      this.log.debug({ run: this.id, hub, why }, "run stream lost");
      if (dead)
        this.http.reportUnreachable(
          hub,
          new FleetlinkError("STREAM_CLOSED", `hub ${hub}: run stream ${why}`),
        );
      else this.http.rotate(hub);
      // The hub may go on pushing replies into the old connection until it sees it is dead: poll meanwhile.
      this.staleUntil = Date.now() + this.staleStreamMs;
      this.schedulePoll();
      this.reconnect = setTimeout(() => this.connect(), this.reconnects.next());
    };
    this.abandon = lost;
    ws.on("error", (e) => lost(describeError(e), true));
    ws.on("close", (code) => lost(`closed (${code})`, code === CloseCode.abnormal));
    ws.on("unexpected-response", (_req, res) => lost(`HTTP ${res.statusCode}`));
    ws.on("open", () => {
      if (gone) return;
      const t = wsTransport(ws);
      // The one liveness rule: pinged when silent for an interval, replaced when silent for 1.5.
      const watch = watchTransport(this.liveness, t, (why) => lost(`${why} (no pong)`, true));
      this.probe = () => watch.probe(this.probeMs);
      const ch = new Channel(t, {
        log: this.log,
        onEvent: (m, b) => {
          if (m === RunEvents.replies) for (const r of b as WireResult[]) this.deliver(r);
        },
      });
      ch.onClose((reason) => lost(`channel ${reason}`));
      this.channel = ch;
      this.reconnects.reset();
      this.markConnected();
      // Replies pushed while we were away were claimed for a socket that died: read them back, once.
      this.recover(0);
    });
  }

  private deliver(r: WireResult): void {
    this.since.delete(r.replyTo);
    // A reply whose call already ended (cancelled, timed out, quorum met) has no waiter: dropped here, and it
    // can never reach a later call because every instruction id is new.
    if (!this.pending.deliver(r.replyTo, r)) this.log.debug({ instruction: r.replyTo }, "late reply dropped");
  }

  /**
   * Reads back the replies of open calls older than `olderThanMs`. One read at a time: a read asked for
   * while one runs (a reconnect's) runs right after it; then the fallback poll continues if still needed.
   */
  private recover(olderThanMs: number): void {
    if (this.closed) return;
    if (this.recovering) {
      if (olderThanMs === 0) this.recoverAgain = true;
      return;
    }
    this.recovering = true;
    void this.readBack(olderThanMs).finally(() => {
      this.recovering = false;
      if (this.recoverAgain) {
        this.recoverAgain = false;
        this.recover(0);
      } else this.schedulePoll();
    });
  }

  /** The fallback poll: only while the stream is down or the hub may still write into a dead one. */
  private schedulePoll(): void {
    if (this.closed || this.poll || this.recovering) return;
    if (this.channel && Date.now() >= this.staleUntil) return;
    this.poll = setTimeout(() => {
      this.poll = undefined;
      this.recover(this.recoveryPollMs);
    }, this.recoveryPollMs);
    this.poll.unref();
  }

  private async readBack(olderThanMs: number): Promise<void> {
    const now = Date.now();
    const ids = this.pending.ids().filter((id) => now - (this.since.get(id) ?? now) >= olderThanMs);
    if (ids.length === 0) return;
    try {
      for (let i = 0; i < ids.length && !this.closed; i += 5000) {
        const { replies } = await this.http.request<{ replies: WireResult[] }>(
          "POST",
          `/v1/runs/${this.id}/replies/query`,
          { instructionIds: ids.slice(i, i + 5000) },
        );
        for (const r of replies) this.deliver(r);
      }
    } catch (e) {
      this.log.debug({ err: String(e) }, "reply recovery failed");
    }
  }

  /**
   * The nodes currently holding the run's host roles (after a standby took over a host, the standby), as a
   * configuration — a set, sorted by node id like every configuration. For host order use `hosts()`.
   */
  async hostConfiguration(): Promise<Configuration> {
    return this.configuration(await this.hosts());
  }

  /** The node holding each host role, in host order: `(await run.hosts())[k]` is host k. */
  async hosts(): Promise<string[]> {
    const { roles } = await this.http.request<{ roles: { hosts: { nodeId: string }[] } | null }>(
      "GET",
      `/v1/runs/${this.id}/hosts`,
    );
    if (!roles)
      throw new FleetlinkError("INVALID_ARGUMENT", `run ${this.id} has no host roles`, { field: "run" });
    return roles.hosts.map((h) => h.nodeId);
  }

  /** The set of nodes a call addresses. */
  configuration(nodes: Iterable<string | { id: string }>): Configuration {
    return new Configuration(
      [...nodes].map((n) => (typeof n === "string" ? n : n.id)),
      this,
    );
  }

  /**
   * Pushes one instruction per node and returns the waits for their replies (registered before the push).
   * `deadline` (epoch ms) and `signal` bound the push request itself, failover included.
   */
  async push(
    nodes: readonly string[],
    method: string,
    payload: unknown,
    opts: {
      ttlMs: number;
      holdWhileOffline?: boolean;
      groupId?: string;
      deadline?: number;
      signal?: AbortSignal;
    },
  ): Promise<{ id: string; dst: string; result: Promise<WireResult> }[]> {
    checkNodesGiven(nodes, method);
    const groupId = opts.groupId ?? newId();
    const items = nodes.map((dst) => ({ id: newId(), dst, method, payload, ttlMs: opts.ttlMs, groupId }));
    const waits = items.map((it) => {
      this.since.set(it.id, Date.now());
      const result = this.pending.add(it.id);
      result.catch(() => {});
      return { id: it.id, dst: it.dst, result };
    });
    const bound = { deadline: opts.deadline, signal: opts.signal };
    const body = items.map((it) => (opts.holdWhileOffline ? { ...it, holdWhileOffline: true } : it));
    try {
      // Over the run stream when it is up (no HTTP request per call; concurrent calls share one frame). If the
      // stream cannot carry it (closed, no answer in time), the push may or may not have happened: HTTP then
      // retries it, and recognises a push that did happen by its ids, as after any failover.
      const ch = this.channel;
      const hub = this.wsHub;
      // A silent replica must not use up the deadline: the stream gets the share one replica would get.
      const remaining = (opts.deadline ?? Number.POSITIVE_INFINITY) - Date.now();
      const budget = Math.min(
        this.http.requestTimeoutMs,
        Math.max(remaining / (this.http.hubs.length + 1), Math.min(remaining, 250)),
      );
      const answer =
        ch?.isOpen && hub && !opts.signal?.aborted && remaining > 0
          ? await this.pushOverStream(ch, body, budget).catch(() => {
              // No answer: suspect the stream's replica (probe it) and let HTTP start elsewhere.
              this.probe?.();
              if (this.http.current === hub) this.http.rotate(hub);
              return null;
            })
          : null;
      if (answer?.error) throw fromWireError(answer.error);
      if (!answer)
        await this.http.request("POST", `/v1/runs/${this.id}/instructions`, { items: body }, bound);
    } catch (e) {
      // A replica that committed the push and died before answering: the retry on another replica finds the
      // (coordinator-chosen) ids taken. If every one of them exists, the push did happen.
      if (isFleetlinkError(e, "INVALID_ARGUMENT") && /^items\[\d+\]\.id$/.test(e.field ?? "")) {
        const found = await this.http
          .request<{ instructions: unknown[] }>(
            "POST",
            `/v1/runs/${this.id}/instructions/query`,
            { ids: items.map((i) => i.id) },
            bound,
          )
          .catch(() => ({ instructions: [] }));
        if (found.instructions.length === items.length) return waits;
      }
      for (const w of waits) {
        this.pending.fail(w.id, e);
        this.since.delete(w.id);
      }
      // Timed out, cut off or cancelled mid-request: the push may have happened. It is withdrawn, so a call
      // reported as failed does not run later.
      if (!isFleetlinkError(e) || !e.definite || e.kind === "CANCELLED")
        void this.withdraw(waits.map((w) => w.id));
      throw e;
    }
    return waits;
  }

  private outgoing: {
    items: unknown[];
    timeoutMs: number;
    done: (r: { error?: WireError }) => void;
    fail: (e: unknown) => void;
  }[] = [];

  /**
   * One call's push over the run stream, in a frame shared with every call pushed in the same turn of the
   * event loop. Resolves with the hub's answer for this call (`error`: the hub refused it, definitely or
   * not, as over HTTP); rejects when the frame got no answer.
   */
  private pushOverStream(ch: Channel, items: unknown[], timeoutMs: number): Promise<{ error?: WireError }> {
    return new Promise((done, fail) => {
      this.outgoing.push({ items, timeoutMs, done, fail });
      if (this.outgoing.length > 1) return;
      queueMicrotask(() => {
        const batch = this.outgoing.splice(0, this.outgoing.length);
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
      });
    });
  }

  private async withdraw(ids: string[]): Promise<void> {
    try {
      // Over the run stream when it is up (off the HTTP path); over HTTP, with failover, when it is not.
      const ch = this.channel;
      if (ch?.isOpen) {
        const done = await ch
          .request(RunMethods.withdraw, { ids }, { timeoutMs: this.http.requestTimeoutMs })
          .then(
            () => true,
            () => false,
          );
        if (done) return;
      }
      await this.http.request("POST", `/v1/runs/${this.id}/instructions/withdraw`, { ids });
    } catch (e) {
      this.log.debug({ err: String(e) }, "withdraw failed; the instructions will expire");
    }
  }

  /** Stops waiting for these instructions and withdraws the ones not yet delivered. */
  async cancel(ids: readonly string[], reason: FleetlinkError): Promise<void> {
    const open = ids.filter((id) => this.pending.fail(id, reason));
    for (const id of open) this.since.delete(id);
    if (open.length > 0) await this.withdraw(open);
  }

  /** Calls every node of `nodes`; resolves when the quorum is met, rejects with IncompleteCallError if it cannot be. */
  async call(
    nodes: readonly string[],
    method: string,
    payload: unknown,
    opts: CallOptions = {},
  ): Promise<CallResult> {
    const decide = quorumFunction(opts.quorum ?? "majority", nodes.length);
    const replies = new Map<string, unknown>();
    const errors = new Map<string, FleetlinkError>();
    for await (const item of this.stream(nodes, method, payload, opts)) {
      if (item.ok) replies.set(item.node, item.value);
      else errors.set(item.node, item.error);
      const d = decide({ replies, errors, nodes });
      if (d === "done") return { replies, errors };
      if (d === "fail") throw new IncompleteCallError("quorum cannot be met", replies, errors);
    }
    if (opts.signal?.aborted) throw new IncompleteCallError("cancelled", replies, errors);
    throw new IncompleteCallError(
      errors.size + replies.size < nodes.length ? "timed out" : "all nodes answered, quorum not met",
      replies,
      errors,
    );
  }

  /**
   * Calls every node and yields replies and errors as they arrive. Leaving the loop early (break, return,
   * quorum met) cancels the rest: undelivered instructions are withdrawn, late replies are dropped.
   */
  async *stream(
    nodes: readonly string[],
    method: string,
    payload: unknown,
    opts: CallOptions = {},
  ): AsyncGenerator<StreamItem> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    if (opts.signal?.aborted) return;
    // The deadline covers the push: a replica that does not answer uses up the call's time, not more.
    const deadline = Date.now() + timeoutMs;
    let waits: Awaited<ReturnType<RunHandle["push"]>>;
    try {
      waits = await this.push(nodes, method, payload, {
        ttlMs: opts.ttlMs ?? timeoutMs,
        deadline,
        signal: opts.signal,
      });
    } catch (e) {
      if (opts.signal?.aborted) return;
      if (!(e instanceof DeadlineExceededError)) throw e;
      // No replica took the push in time: no node can answer in time either.
      for (const dst of nodes) yield { node: dst, ok: false, error: e };
      return;
    }
    const open = new Map(waits.map((w) => [w.id, w]));
    const queue: StreamItem[] = [];
    let wake: (() => void) | null = null;
    const push = (it: StreamItem) => {
      queue.push(it);
      wake?.();
    };
    for (const w of waits)
      w.result.then(
        (r) => {
          open.delete(w.id);
          push(
            r.error
              ? { node: w.dst, ok: false, error: fromWireError(r.error) }
              : { node: w.dst, ok: true, value: r.payload },
          );
        },
        () => {},
      );
    const timedOut = new FleetlinkError("MESSAGE_EXPIRED", `no reply within ${timeoutMs} ms`);
    try {
      while (open.size > 0 || queue.length > 0) {
        if (queue.length > 0) {
          yield queue.shift()!;
          continue;
        }
        if (opts.signal?.aborted || Date.now() >= deadline) break;
        // One timer and one abort listener per wait, both removed however the wait ends.
        await new Promise<void>((res) => {
          const done = () => {
            clearTimeout(t);
            opts.signal?.removeEventListener("abort", done);
            wake = null;
            res();
          };
          const t = setTimeout(done, deadline - Date.now());
          opts.signal?.addEventListener("abort", done, { once: true });
          wake = done;
        });
      }
      // Deadline passed: every node still silent is reported as timed out.
      if (!opts.signal?.aborted)
        for (const w of [...open.values()]) {
          open.delete(w.id);
          yield { node: w.dst, ok: false, error: timedOut };
        }
    } finally {
      // Stops waiting at once (synchronously); the withdraw request runs on without holding up the caller.
      if (open.size > 0 || waits.some((w) => this.pending.has(w.id)))
        void this.cancel(
          waits.map((w) => w.id),
          new FleetlinkError("CANCELLED", "call finished"),
        );
    }
  }

  /**
   * One instruction to every given node, held for nodes that are offline now until the TTL: they get it when
   * they reconnect. Exactly once per node.
   */
  async broadcast(
    nodes: readonly string[],
    method: string,
    payload: unknown,
    opts: BroadcastOptions,
  ): Promise<Broadcast> {
    const waits = await this.push(nodes, method, payload, {
      ttlMs: opts.ttlMs,
      holdWhileOffline: true,
      deadline: Date.now() + (opts.timeoutMs ?? opts.ttlMs),
      signal: opts.signal,
    });
    return new Broadcast(this, waits);
  }

  /** Ends the reply stream, fails open calls with CANCELLED and stops every timer. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.poll);
    clearTimeout(this.reconnect);
    this.unsubscribe();
    this.pending.closeAll(new FleetlinkError("CANCELLED", "run handle closed"));
    this.since.clear();
    this.channel?.close();
    this.abandon?.("run handle closed");
    this.onClosed?.(this);
  }
}

export type BroadcastNodeState = "pending" | "delivered" | "replied" | "failed";

/** Tracks one broadcast: per node pending → delivered → replied | failed. */
export class Broadcast {
  private readonly outcome = new Map<string, StreamItem>();
  readonly instructions: ReadonlyMap<string, string>; // node → instruction id
  readonly done: Promise<Map<string, StreamItem>>;
  private readonly run: RunHandle;

  constructor(run: RunHandle, waits: { id: string; dst: string; result: Promise<WireResult> }[]) {
    this.run = run;
    this.instructions = new Map(waits.map((w) => [w.dst, w.id]));
    this.done = Promise.all(
      waits.map((w) =>
        w.result.then(
          (r) =>
            this.outcome.set(
              w.dst,
              r.error
                ? { node: w.dst, ok: false, error: fromWireError(r.error) }
                : { node: w.dst, ok: true, value: r.payload },
            ),
          (e: unknown) => this.outcome.set(w.dst, { node: w.dst, ok: false, error: e as FleetlinkError }),
        ),
      ),
    ).then(() => new Map(this.outcome));
  }

  /** Per node: replied / failed once known, else delivered (the hub handed it to the node) or pending. */
  async status(): Promise<Map<string, BroadcastNodeState>> {
    const { instructions } = await this.run.http.request<{
      instructions: { id: string; dst: string; attempts: number }[];
    }>("POST", `/v1/runs/${this.run.id}/instructions/query`, { ids: [...this.instructions.values()] });
    const delivered = new Set(instructions.filter((i) => i.attempts > 0).map((i) => i.dst));
    const out = new Map<string, BroadcastNodeState>();
    for (const node of this.instructions.keys()) {
      const o = this.outcome.get(node);
      out.set(node, o ? (o.ok ? "replied" : "failed") : delivered.has(node) ? "delivered" : "pending");
    }
    return out;
  }
}

/** A configuration bound to a run: `call`, `stream` and `broadcast` address exactly its nodes. */
export class Configuration extends NodeSet {
  private readonly run: RunHandle;

  constructor(ids: Iterable<string>, run: RunHandle) {
    super(ids);
    this.run = run;
  }

  call(method: string, payload?: unknown, opts?: CallOptions): Promise<CallResult> {
    return this.run.call(this.ids, method, payload, opts);
  }

  stream(method: string, payload?: unknown, opts?: CallOptions): AsyncGenerator<StreamItem> {
    return this.run.stream(this.ids, method, payload, opts);
  }

  broadcast(method: string, payload: unknown, opts: BroadcastOptions): Promise<Broadcast> {
    return this.run.broadcast(this.ids, method, payload, opts);
  }
}
