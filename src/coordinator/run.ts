import WebSocket from "ws";
import { backoff } from "../node/backoff.ts";
import { FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import { fromWireError } from "../protocol/frames.ts";
import { newId } from "../protocol/ids.ts";
import type { Run as RunRecord } from "../protocol/types.ts";
import { RunEvents, type WireResult } from "../protocol/wire.ts";
import { Channel, type Logger } from "../stream/channel.ts";
import { PendingCalls } from "../stream/pending.ts";
import { wsTransport } from "../stream/ws.ts";
import { NodeSet } from "./configuration.ts";
import { IncompleteCallError } from "./errors.ts";
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

export interface CallResult {
  /** Successful replies by node id. */
  replies: Map<string, unknown>;
  /** Failed nodes (handler errors, NODE_UNAVAILABLE, …) by node id. */
  errors: Map<string, FleetlinkError>;
}

export type StreamItem =
  | { node: string; ok: true; value: unknown }
  | { node: string; ok: false; error: FleetlinkError };

/** One run, seen from its coordinator: a reply stream from the hub, and calls over configurations. */
export class RunHandle {
  readonly id: string;
  readonly http: HubClient;
  private readonly pending = new PendingCalls<WireResult>();
  private readonly since = new Map<string, number>();
  private channel: Channel | null = null;
  private ws: WebSocket | null = null;
  private closed = false;
  private attempt = 0;
  private safety: ReturnType<typeof setInterval>;
  private readonly log: Logger;
  private connected!: Promise<void>;
  private markConnected!: () => void;

  constructor(run: RunRecord, http: HubClient, log: Logger) {
    this.id = run.id;
    this.http = http;
    this.log = log;
    this.resetConnected();
    this.connect();
    // A reply pushed into a socket that was dying is not lost: open calls older than 2 s read theirs back.
    this.safety = setInterval(() => void this.recover(2000), 2000);
    this.safety.unref();
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

  private connect(): void {
    if (this.closed) return;
    const url = `${this.http.current.replace(/^http/, "ws")}/v1/runs/${this.id}/stream`;
    const ws = new WebSocket(url, {
      headers: { authorization: this.http.authHeader },
      handshakeTimeout: 5000,
    });
    this.ws = ws;
    let gone = false;
    const lost = () => {
      if (gone || this.ws !== ws) return;
      gone = true;
      this.channel = null;
      this.ws = null;
      this.resetConnected();
      if (this.closed) return;
      this.http.rotate();
      setTimeout(() => this.connect(), backoff(this.attempt++, 50, 2000));
    };
    ws.on("error", lost);
    ws.on("unexpected-response", () => {
      ws.terminate();
      lost();
    });
    ws.on("open", () => {
      const ch = new Channel(wsTransport(ws), {
        log: this.log,
        onEvent: (m, b) => {
          if (m === RunEvents.replies) for (const r of b as WireResult[]) this.deliver(r);
        },
      });
      ch.onClose(lost);
      this.channel = ch;
      this.attempt = 0;
      this.markConnected();
      // Replies pushed while we were away were claimed for a socket that died: read them back.
      void this.recover(0);
    });
  }

  private deliver(r: WireResult): void {
    this.since.delete(r.replyTo);
    // A reply whose call already ended (cancelled, timed out, quorum met) has no waiter: dropped here, and it
    // can never reach a later call because every instruction id is new.
    if (!this.pending.deliver(r.replyTo, r)) this.log.debug({ instruction: r.replyTo }, "late reply dropped");
  }

  private async recover(olderThanMs: number): Promise<void> {
    const now = Date.now();
    const ids = this.pending.ids().filter((id) => now - (this.since.get(id) ?? now) >= olderThanMs);
    if (ids.length === 0 || this.closed) return;
    try {
      for (let i = 0; i < ids.length; i += 5000) {
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
   * configuration, in host order.
   */
  async hostConfiguration(): Promise<Configuration> {
    const { roles } = await this.http.request<{ roles: { hosts: { nodeId: string }[] } | null }>(
      "GET",
      `/v1/runs/${this.id}/hosts`,
    );
    if (!roles)
      throw new FleetlinkError("INVALID_ARGUMENT", `run ${this.id} has no host roles`, { field: "run" });
    return this.configuration(roles.hosts.map((h) => h.nodeId));
  }

  /** The set of nodes a call addresses. */
  configuration(nodes: Iterable<string | { id: string }>): Configuration {
    return new Configuration(
      [...nodes].map((n) => (typeof n === "string" ? n : n.id)),
      this,
    );
  }

  /** Pushes one instruction per node and returns the waits for their replies (registered before the push). */
  async push(
    nodes: readonly string[],
    method: string,
    payload: unknown,
    opts: { ttlMs: number; holdWhileOffline?: boolean; groupId?: string },
  ): Promise<{ id: string; dst: string; result: Promise<WireResult> }[]> {
    const groupId = opts.groupId ?? newId();
    const items = nodes.map((dst) => ({ id: newId(), dst, method, payload, ttlMs: opts.ttlMs, groupId }));
    const waits = items.map((it) => {
      this.since.set(it.id, Date.now());
      const result = this.pending.add(it.id);
      result.catch(() => {});
      return { id: it.id, dst: it.dst, result };
    });
    try {
      await this.http.request("POST", `/v1/runs/${this.id}/instructions`, {
        items: items.map((it) => (opts.holdWhileOffline ? { ...it, holdWhileOffline: true } : it)),
      });
    } catch (e) {
      // A replica that committed the push and died before answering: the retry on another replica finds the
      // (coordinator-chosen) ids taken. If every one of them exists, the push did happen.
      if (isFleetlinkError(e, "INVALID_ARGUMENT") && /^items\[\d+\]\.id$/.test(e.field ?? "")) {
        const found = await this.http
          .request<{ instructions: unknown[] }>("POST", `/v1/runs/${this.id}/instructions/query`, {
            ids: items.map((i) => i.id),
          })
          .catch(() => ({ instructions: [] }));
        if (found.instructions.length === items.length) return waits;
      }
      for (const w of waits) {
        this.pending.fail(w.id, e);
        this.since.delete(w.id);
      }
      throw e;
    }
    return waits;
  }

  /** Stops waiting for these instructions and withdraws the ones not yet delivered. */
  async cancel(ids: readonly string[], reason: FleetlinkError): Promise<void> {
    const open = ids.filter((id) => this.pending.fail(id, reason));
    for (const id of open) this.since.delete(id);
    if (open.length === 0) return;
    try {
      await this.http.request("POST", `/v1/runs/${this.id}/instructions/withdraw`, { ids: open });
    } catch (e) {
      this.log.debug({ err: String(e) }, "withdraw failed; the instructions will expire");
    }
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
    const waits = await this.push(nodes, method, payload, { ttlMs: opts.ttlMs ?? timeoutMs });
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
    const deadline = Date.now() + timeoutMs;
    const timedOut = new FleetlinkError("MESSAGE_EXPIRED", `no reply within ${timeoutMs} ms`);
    try {
      while (open.size > 0 || queue.length > 0) {
        if (queue.length > 0) {
          yield queue.shift()!;
          continue;
        }
        if (opts.signal?.aborted || Date.now() >= deadline) break;
        await new Promise<void>((res) => {
          const t = setTimeout(res, deadline - Date.now());
          const onAbort = () => res();
          opts.signal?.addEventListener("abort", onAbort, { once: true });
          wake = () => {
            clearTimeout(t);
            opts.signal?.removeEventListener("abort", onAbort);
            res();
          };
        });
        wake = null;
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
    opts: { ttlMs: number },
  ): Promise<Broadcast> {
    const waits = await this.push(nodes, method, payload, { ttlMs: opts.ttlMs, holdWhileOffline: true });
    return new Broadcast(this, waits);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.safety);
    this.pending.closeAll(new FleetlinkError("CANCELLED", "run handle closed"));
    this.channel?.close();
    this.ws?.terminate();
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

  broadcast(method: string, payload: unknown, opts: { ttlMs: number }): Promise<Broadcast> {
    return this.run.broadcast(this.ids, method, payload, opts);
  }
}
