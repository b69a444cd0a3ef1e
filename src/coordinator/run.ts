import { FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import type { Run as RunRecord } from "../protocol/types.ts";
import type { Logger } from "../stream/channel.ts";
import { type FleetBlobs, RunBlobs } from "./blobs.ts";
import { Broadcast, type BroadcastOptions } from "./broadcast.ts";
import {
  type CallOptions,
  type CallResult,
  callNodes,
  resolveNames,
  type StreamItem,
  streamNodes,
} from "./call.ts";
import { Configuration } from "./configuration.ts";
import type { HubClient } from "./http.ts";
import { NodeNames } from "./names.ts";
import { Pusher, type PushOptions, type Wait } from "./push.ts";
import { ReplyStream, type ReplyStreamOptions, type ReplyStreamState } from "./run-stream.ts";

export { Broadcast, type BroadcastNodeState, type BroadcastOptions } from "./broadcast.ts";
export type { CallOptions, CallResult, StreamItem } from "./call.ts";
export { Configuration } from "./configuration.ts";
export type { ReplyStreamState } from "./run-stream.ts";

export interface RunHandleOptions extends ReplyStreamOptions {
  /** Called once, when the handle is closed. */
  onClose?: (run: RunHandle) => void;
  /** Binary data in payloads: the fleet's transfers and result mode. (Default: none, payloads sent as JSON) */
  blobs?: FleetBlobs;
  /** Node names, shared by the fleet's runs. (Default: this handle's own, read from the hub's node listing) */
  names?: NodeNames;
}

/**
 * One run, seen from its coordinator: a reply stream from the hub (run-stream.ts), pushes (push.ts), and
 * calls (call.ts) and broadcasts (broadcast.ts) over configurations.
 */
export class RunHandle {
  readonly id: string;
  readonly http: HubClient;
  private readonly replies: ReplyStream;
  private readonly pusher: Pusher;
  /**
   * The run's blobs: `put(bytes | stream | { path })` uploads one and returns its handle, for payloads.
   * Undefined for a handle made without blob support.
   */
  readonly blobs: RunBlobs | undefined;
  private readonly onClosed: ((run: RunHandle) => void) | undefined;
  private closed = false;
  /** What calls need of this run. */
  private readonly calls: { pusher: Pusher; waiting: (id: string) => boolean; names: NodeNames };
  /** Names of the nodes its calls address, for results and errors. */
  readonly names: NodeNames;

  constructor(run: RunRecord, http: HubClient, log: Logger, opts: RunHandleOptions = {}) {
    this.id = run.id;
    this.http = http;
    this.onClosed = opts.onClose;
    this.replies = new ReplyStream(run.id, http, log, opts);
    this.blobs = opts.blobs ? new RunBlobs(run.id, http, opts.blobs) : undefined;
    this.pusher = new Pusher(run.id, http, this.replies, log, this.blobs);
    this.names =
      opts.names ??
      new NodeNames(
        async () => (await http.request<{ nodes: { id: string; name: string }[] }>("GET", "/v1/nodes")).nodes,
      );
    this.calls = { pusher: this.pusher, waiting: (id) => this.replies.has(id), names: this.names };
  }

  /** Resolves once the reply stream is connected. */
  ready(): Promise<void> {
    return this.replies.ready();
  }

  get replyStream(): ReplyStreamState {
    return this.replies.state;
  }

  /** Calls (and broadcast nodes) still waiting for a reply. */
  get pendingCalls(): number {
    return this.replies.size;
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

  /**
   * The set of nodes a call addresses: ids, or node records (`fleet.nodes()`), whose names results and errors
   * then report without asking the hub.
   */
  configuration(nodes: Iterable<string | { id: string; name?: string }>): Configuration {
    const list = [...nodes];
    this.names.learn(list.filter((n): n is { id: string; name?: string } => typeof n !== "string"));
    return new Configuration(
      list.map((n) => (typeof n === "string" ? n : n.id)),
      this,
    );
  }

  /**
   * Pushes one instruction per node and returns the waits for their replies (registered before the push).
   * `deadline` (epoch ms) and `signal` bound the push request itself, failover included.
   */
  push(nodes: readonly string[], method: string, payload: unknown, opts: PushOptions): Promise<Wait[]> {
    return this.pusher.push(nodes, method, payload, opts);
  }

  /** Stops waiting for these instructions and withdraws the ones not yet delivered. */
  cancel(ids: readonly string[], reason: FleetlinkError): Promise<void> {
    return this.pusher.cancel(ids, reason);
  }

  /** Calls every node of `nodes`; resolves when the quorum is met, rejects with IncompleteCallError if it cannot be. */
  call(
    nodes: readonly string[],
    method: string,
    payload: unknown,
    opts: CallOptions = {},
  ): Promise<CallResult> {
    return callNodes(this.calls, nodes, method, payload, opts);
  }

  /**
   * Calls every node and yields replies and errors as they arrive. Leaving the loop early (break, return,
   * quorum met) cancels the rest: undelivered instructions are withdrawn, late replies are dropped.
   */
  stream(
    nodes: readonly string[],
    method: string,
    payload: unknown,
    opts: CallOptions = {},
  ): AsyncGenerator<StreamItem> {
    return streamNodes(this.calls, nodes, method, payload, opts);
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
    const deadline = Date.now() + (opts.timeoutMs ?? opts.ttlMs);
    const named = resolveNames(this.names, nodes, deadline);
    const waits = await this.pusher.push(nodes, method, payload, {
      ttlMs: opts.ttlMs,
      holdWhileOffline: true,
      deadline,
      signal: opts.signal,
      ...(opts.traceparent !== undefined ? { traceparent: opts.traceparent } : {}),
    });
    await named;
    return new Broadcast(this, waits);
  }

  /**
   * The run's record as the hub has it now: status (`pending` until its first push, `running`, `finished`),
   * reason, times. RUN_NOT_FOUND once a cleanup removed it.
   */
  async status(): Promise<RunRecord> {
    const { run } = await this.http.request<{ run: RunRecord }>("GET", `/v1/runs/${this.id}`);
    return run;
  }

  /**
   * Finishes the run for everyone: it takes no new instructions (pushes get RUN_FINISHED); replies already
   * stored can still be read. Resolves with the finished record, also when the run was finished already (then
   * its reason is the first finisher's). Does not close this handle: see close().
   */
  async finish(reason?: string): Promise<RunRecord> {
    let run = await this.status();
    // Compare-and-set from the status just read. A status only moves forward (pending → running → finished),
    // so a conflict re-read at most twice settles it; a retried request that had committed reads finished.
    for (let i = 0; i < 3 && run.status !== "finished"; i++) {
      try {
        const body = { from: run.status, to: "finished", ...(reason === undefined ? {} : { reason }) };
        return (await this.http.request<{ run: RunRecord }>("POST", `/v1/runs/${this.id}/status`, body)).run;
      } catch (e) {
        if (!isFleetlinkError(e, "STATUS_CONFLICT")) throw e;
        run = await this.status();
      }
    }
    return run;
  }

  /**
   * Ends this handle: its reply stream, its timers, and its open calls (they fail CANCELLED). The run itself
   * goes on (other handles, the CLI, a later `fleet.run(id)` can still use it): finish() ends it. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.replies.close();
    this.onClosed?.(this);
  }

  /** `await using run = await fleet.createRun()`: close() at the end of the scope (the run is not finished). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
