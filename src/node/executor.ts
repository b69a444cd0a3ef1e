import {
  describeError,
  ErrorCodes,
  type ErrorName,
  FleetlinkError,
  isFleetlinkError,
} from "../protocol/errors.ts";
import { newId } from "../protocol/ids.ts";
import { MAX_ERROR_MESSAGE_CHARS, MAX_JSON_DEPTH, tooDeep, truncate } from "../protocol/limits.ts";
import type { ReplyError } from "../protocol/types.ts";
import type { WireInstruction } from "../protocol/wire.ts";
import type { Logger } from "../stream/channel.ts";
import { isTraceparent, loadOtel, otelTried, startSpan, type TraceSpan } from "../util/tracing.ts";
import type { Handler } from "./handler.ts";
import type { Outbox } from "./outbox.ts";

export interface ExecutorOptions {
  handlers: Record<string, Handler>;
  outbox: Outbox;
  nodeId: () => string;
  /** The hub's payload limit (learned at hello): a larger result becomes an error reply. */
  maxPayloadBytes: () => number;
  /** Aborted when the agent stops; handlers see it as `signal`. */
  signal: AbortSignal;
  log: Logger;
}

/**
 * Runs the instructions delivered to a node, each at most once per agent: a redelivered instruction that is
 * running is ignored, one already answered gets its reply again. Every outcome becomes one reply in the outbox.
 */
export class Executor {
  private readonly o: ExecutorOptions;
  private readonly running = new Map<string, Promise<void>>();
  /** Each running handler's own abort: the hub cancelled its instruction. */
  private readonly aborts = new Map<string, AbortController>();

  constructor(o: ExecutorOptions) {
    this.o = o;
  }

  /** Instruction ids whose handler is running. */
  runningIds(): string[] {
    return [...this.running.keys()];
  }

  /** Ids of running handlers not cancelled: the ones whose leases progress keeps. */
  workingIds(): string[] {
    return [...this.running.keys()].filter((id) => !this.aborts.get(id)?.signal.aborted);
  }

  /**
   * The hub says these instructions ended before a reply (`cancel` event): each running handler's signal
   * aborts with a FleetlinkError of `code`, its result will be dropped, and a reply already queued is dropped
   * from the outbox. Unknown ids are ignored. Returns how many were running or queued.
   */
  cancel(ids: readonly string[], code: string): number {
    let n = 0;
    for (const id of ids) {
      const ac = this.aborts.get(id);
      if (ac && !ac.signal.aborted) {
        ac.abort(cancelReason(id, code));
        n++;
      }
      if (this.o.outbox.drop(id)) n++;
    }
    if (n > 0) this.o.log.debug({ ids, code, count: n }, "instructions cancelled by the hub");
    return n;
  }

  get busy(): number {
    return this.running.size;
  }

  /** Resolves when every running handler has ended. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.running.values()]);
  }

  /** An instruction arrived (perhaps again). */
  accept(ins: WireInstruction): void {
    const done = this.o.outbox.done(ins.id);
    if (done) {
      // Redelivered after we replied: send the same reply again (the hub acknowledges the duplicate).
      this.o.outbox.queue(done);
    } else if (!this.running.has(ins.id) && !this.o.outbox.has(ins.id)) {
      const ac = new AbortController();
      this.aborts.set(ins.id, ac);
      const p = this.run(ins, ac.signal).finally(() => {
        this.running.delete(ins.id);
        this.aborts.delete(ins.id);
      });
      this.running.set(ins.id, p);
    }
  }

  private async run(ins: WireInstruction, cancelled: AbortSignal): Promise<void> {
    const handler = this.o.handlers[ins.method];
    let payload: unknown;
    let error: ReplyError | null = null;
    // A malformed trace context from a hub is ignored, not a reason to refuse the work.
    const traceparent = isTraceparent(ins.traceparent) ? ins.traceparent : undefined;
    let span: TraceSpan | undefined;
    try {
      if (!handler)
        throw new FleetlinkError("INVALID_ARGUMENT", `no handler for method ${ins.method}`, {
          field: "method",
        });
      if (traceparent && !otelTried()) await loadOtel();
      span = traceparent
        ? startSpan("fleetlink.handle", {
            parent: traceparent,
            kind: "consumer",
            attributes: {
              "fleetlink.instruction": ins.id,
              "fleetlink.run": ins.runId,
              "fleetlink.method": ins.method,
              "fleetlink.attempts": ins.attempts,
            },
          })
        : undefined;
      const ctx = {
        instructionId: ins.id,
        runId: ins.runId,
        method: ins.method,
        attempts: ins.attempts,
        nodeId: this.o.nodeId(),
        signal: AbortSignal.any([this.o.signal, cancelled]),
        ...(traceparent ? { traceparent } : {}),
      };
      payload = await (span ? span.run(() => handler(ins.payload, ctx)) : handler(ins.payload, ctx));
      span?.end();
    } catch (e) {
      span?.end(e);
      error = {
        code: isFleetlinkError(e) ? e.code : "FLEETLINK_E_HANDLER_FAILED",
        message: truncate(describeError(e), MAX_ERROR_MESSAGE_CHARS),
      };
      // A handler that ended because its call was cancelled did what it was told: not a failure to grep for.
      if (cancelled.aborted)
        this.o.log.debug(
          { instruction: ins.id, method: ins.method, err: truncate(error.message, 256) },
          "handler stopped: its instruction was cancelled",
        );
      else
        this.o.log.warn(
          { instruction: ins.id, method: ins.method, code: error.code, err: truncate(error.message, 256) },
          "handler failed",
        );
    }
    if (cancelled.aborted) {
      // Nobody reads it: the hub refuses a reply to an ended instruction (INSTRUCTION_ENDED).
      this.o.log.debug(
        { instruction: ins.id, method: ins.method },
        "result of a cancelled instruction dropped",
      );
      return;
    }
    if (!error) ({ payload, error } = checkResult(payload, this.o.maxPayloadBytes()));
    // The reply carries the handler's span (or the call's context), so a tracing backend links it back.
    const replyTrace = span?.traceparent ?? traceparent;
    this.o.outbox.queue({
      id: newId(),
      runId: ins.runId,
      replyTo: ins.id,
      payload: payload ?? null,
      error,
      ...(replyTrace ? { traceparent: replyTrace } : {}),
    });
  }
}

/** What a cancelled handler's `ctx.signal.reason` is: why its instruction ended, as its error code says. */
const cancelReason = (id: string, code: string): FleetlinkError => {
  const kind = code.startsWith("FLEETLINK_E_") ? code.slice("FLEETLINK_E_".length) : "";
  const message = `instruction ${id} ended before its reply (${code}): the hub cancelled it`;
  return Object.hasOwn(ErrorCodes, kind)
    ? new FleetlinkError(kind as ErrorName, message)
    : new FleetlinkError("CANCELLED", message);
};

/**
 * A result that cannot travel becomes an error reply the coordinator sees (never a crash, never a reply the
 * hub refuses and the agent resends forever): JSON cannot encode it (a BigInt, a cycle), it nests too deep,
 * or it is larger than the hub's payload limit.
 */
export const checkResult = (
  payload: unknown,
  maxPayloadBytes: number,
): { payload: unknown; error: ReplyError | null } => {
  let bytes: number;
  try {
    bytes = Buffer.byteLength(JSON.stringify(payload ?? null));
  } catch (e) {
    return {
      payload: null,
      error: {
        code: "FLEETLINK_E_HANDLER_FAILED",
        message: `handler result cannot be encoded as JSON: ${truncate(describeError(e), 500)}`,
      },
    };
  }
  if (tooDeep(payload))
    return {
      payload: null,
      error: {
        code: "FLEETLINK_E_PAYLOAD_TOO_LARGE",
        message: `handler result nests deeper than ${MAX_JSON_DEPTH} levels`,
      },
    };
  if (bytes > maxPayloadBytes)
    return {
      payload: null,
      error: {
        code: "FLEETLINK_E_PAYLOAD_TOO_LARGE",
        message: `handler result of ${bytes} bytes exceeds the hub's payload limit of ${maxPayloadBytes}`,
      },
    };
  return { payload, error: null };
};
