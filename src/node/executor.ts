import { describeError, FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import { newId } from "../protocol/ids.ts";
import { MAX_ERROR_MESSAGE_CHARS, MAX_JSON_DEPTH, tooDeep, truncate } from "../protocol/limits.ts";
import type { ReplyError } from "../protocol/types.ts";
import type { WireInstruction } from "../protocol/wire.ts";
import type { Logger } from "../stream/channel.ts";
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

  constructor(o: ExecutorOptions) {
    this.o = o;
  }

  /** Instruction ids whose handler is running. */
  runningIds(): string[] {
    return [...this.running.keys()];
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
      const p = this.run(ins).finally(() => this.running.delete(ins.id));
      this.running.set(ins.id, p);
    }
  }

  private async run(ins: WireInstruction): Promise<void> {
    const handler = this.o.handlers[ins.method];
    let payload: unknown;
    let error: ReplyError | null = null;
    try {
      if (!handler)
        throw new FleetlinkError("INVALID_ARGUMENT", `no handler for method ${ins.method}`, {
          field: "method",
        });
      payload = await handler(ins.payload, {
        instructionId: ins.id,
        runId: ins.runId,
        method: ins.method,
        attempts: ins.attempts,
        nodeId: this.o.nodeId(),
        signal: this.o.signal,
      });
    } catch (e) {
      error = {
        code: isFleetlinkError(e) ? e.code : "FLEETLINK_E_HANDLER_FAILED",
        message: truncate(describeError(e), MAX_ERROR_MESSAGE_CHARS),
      };
      this.o.log.warn(
        { instruction: ins.id, method: ins.method, code: error.code, err: truncate(error.message, 256) },
        "handler failed",
      );
    }
    if (!error) ({ payload, error } = checkResult(payload, this.o.maxPayloadBytes()));
    this.o.outbox.queue({ id: newId(), runId: ins.runId, replyTo: ins.id, payload: payload ?? null, error });
  }
}

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
