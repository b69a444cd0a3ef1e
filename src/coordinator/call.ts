import { FleetlinkError } from "../protocol/errors.ts";
import { fromWireError } from "../protocol/frames.ts";
import type { WireResult } from "../protocol/wire.ts";
import { DeadlineExceededError, IncompleteCallError } from "./errors.ts";
import type { NodeNames, NodeRef } from "./names.ts";
import type { Pusher, Wait } from "./push.ts";
import { type Quorum, quorumFunction } from "./quorum.ts";

export interface CallOptions {
  /** (Default: "majority") */
  quorum?: Quorum;
  /** Overall deadline in ms; nodes that have not answered by then count as failed. (Default: 30000) */
  timeoutMs?: number;
  /** Instruction TTL in ms. (Default: timeoutMs) */
  ttlMs?: number;
  signal?: AbortSignal;
  /**
   * The W3C trace context the call belongs to (`00-<trace id>-<parent id>-<flags>`), handed to each node's
   * handler as `ctx.traceparent`; INVALID_ARGUMENT naming `traceparent` if malformed. (Default: the active
   * OpenTelemetry span's, when `@opentelemetry/api` is installed and a span is active; else none)
   */
  traceparent?: string;
}

export interface CallResult {
  /** Successful replies by node id. */
  replies: Map<string, unknown>;
  /** Failed nodes (handler errors, NODE_UNAVAILABLE, …) by node id. */
  errors: Map<string, FleetlinkError>;
  /**
   * The trace context each node replied with, by node id: its `fleetlink.handle` span's when the node traces
   * with OpenTelemetry, else the call's own. Only nodes that answered a traced call are in it.
   */
  traceparents: Map<string, string>;
  /** Every node the call addressed, by id, with its name (null if the hub's node listing did not have it). */
  nodes: ReadonlyMap<string, NodeRef>;
}

/**
 * One node's outcome: `node` is its id, `name` its name (null if unknown); `traceparent` is the trace context
 * its reply carried (see CallResult.traceparents).
 */
export type StreamItem =
  | { node: string; name: string | null; ok: true; value: unknown; traceparent?: string }
  | { node: string; name: string | null; ok: false; error: FleetlinkError; traceparent?: string };

/** A node's reply as the item a call or broadcast reports. */
export const toStreamItem = (node: string, r: WireResult, name: string | null = null): StreamItem => {
  const item: StreamItem = r.error
    ? { node, name, ok: false, error: fromWireError(r.error) }
    : { node, name, ok: true, value: r.payload };
  if (r.traceparent) item.traceparent = r.traceparent;
  return item;
};

/** What a call needs from its run: pushes, and whether a reply is still awaited. */
export interface CallContext {
  pusher: Pusher;
  waiting(instructionId: string): boolean;
  /** Where node names come from. (Default: none, names are null) */
  names?: NodeNames;
}

/** Calls every node of `nodes`; resolves when the quorum is met, rejects with IncompleteCallError if it cannot be. */
export const callNodes = async (
  run: CallContext,
  nodes: readonly string[],
  method: string,
  payload: unknown,
  opts: CallOptions = {},
): Promise<CallResult> => {
  const decide = quorumFunction(opts.quorum ?? "majority", nodes.length);
  const replies = new Map<string, unknown>();
  const errors = new Map<string, FleetlinkError>();
  const traceparents = new Map<string, string>();
  // Named from the cache streamNodes filled (before its first item) when the call ends.
  const refs = new Map<string, NodeRef>(nodes.map((id) => [id, { id, name: null }]));
  for await (const item of streamNodes(run, nodes, method, payload, opts)) {
    if (item.ok) replies.set(item.node, item.value);
    else errors.set(item.node, item.error);
    if (item.traceparent) traceparents.set(item.node, item.traceparent);
    const d = decide({ replies, errors, nodes });
    if (d === "done") return { replies, errors, traceparents, nodes: withNames(run, refs) };
    if (d === "fail")
      throw new IncompleteCallError("quorum cannot be met", replies, errors, withNames(run, refs));
  }
  if (opts.signal?.aborted) throw new IncompleteCallError("cancelled", replies, errors, withNames(run, refs));
  throw new IncompleteCallError(
    errors.size + replies.size < nodes.length ? "timed out" : "all nodes answered, quorum not met",
    replies,
    errors,
    withNames(run, refs),
  );
};

/** Each node's name from the cache (streamNodes resolved them), also for nodes that never answered. */
const withNames = (run: CallContext, refs: Map<string, NodeRef>): Map<string, NodeRef> => {
  for (const [id, r] of refs) if (r.name === null) refs.set(id, { id, name: run.names?.get(id) ?? null });
  return refs;
};

/**
 * Names of `nodes` for a call: one listing if some were never seen (started with the push, so it adds no round
 * trip in series), waited for no longer than the call's deadline.
 */
export const resolveNames = (
  names: NodeNames | undefined,
  nodes: readonly string[],
  deadline: number,
): Promise<void> => {
  if (!names) return Promise.resolve();
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    names.resolve(nodes),
    new Promise<void>((r) => {
      timer = setTimeout(r, Math.max(0, deadline - Date.now()));
    }),
  ]).finally(() => clearTimeout(timer));
};

/**
 * Calls every node and yields replies and errors as they arrive. Leaving the loop early (break, return,
 * quorum met) cancels the rest: undelivered instructions are withdrawn, late replies are dropped.
 */
export async function* streamNodes(
  run: CallContext,
  nodes: readonly string[],
  method: string,
  payload: unknown,
  opts: CallOptions = {},
): AsyncGenerator<StreamItem> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  if (opts.signal?.aborted) return;
  // The deadline covers the push: a replica that does not answer uses up the call's time, not more.
  const deadline = Date.now() + timeoutMs;
  const named = resolveNames(run.names, nodes, deadline);
  const nameOf = (id: string) => run.names?.get(id) ?? null;
  let waits: Wait[];
  try {
    waits = await run.pusher.push(nodes, method, payload, {
      ttlMs: opts.ttlMs ?? timeoutMs,
      deadline,
      signal: opts.signal,
      ...(opts.traceparent !== undefined ? { traceparent: opts.traceparent } : {}),
    });
  } catch (e) {
    if (opts.signal?.aborted) return;
    if (!(e instanceof DeadlineExceededError)) throw e;
    // No replica took the push in time: no node can answer in time either.
    await named;
    for (const dst of nodes) yield { node: dst, name: nameOf(dst), ok: false, error: e };
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
        push(toStreamItem(w.dst, r));
      },
      () => {},
    );
  const timedOut = new FleetlinkError("MESSAGE_EXPIRED", `no reply within ${timeoutMs} ms`);
  try {
    await named;
    while (open.size > 0 || queue.length > 0) {
      if (queue.length > 0) {
        // Named when handed over: a reply may arrive before the names do.
        const it = queue.shift()!;
        yield { ...it, name: nameOf(it.node) };
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
        yield { node: w.dst, name: nameOf(w.dst), ok: false, error: timedOut };
      }
  } finally {
    // Stops waiting at once (synchronously); the withdraw request runs on without holding up the caller.
    if (open.size > 0 || waits.some((w) => run.waiting(w.id)))
      void run.pusher.cancel(
        waits.map((w) => w.id),
        new FleetlinkError("CANCELLED", "call finished"),
      );
  }
}
