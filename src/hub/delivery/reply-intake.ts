import { invalid, isFleetlinkError } from "../../protocol/errors.ts";
import { isId } from "../../protocol/ids.ts";
import { MAX_ERROR_MESSAGE_CHARS, MAX_JSON_DEPTH, tooDeep, truncate } from "../../protocol/limits.ts";
import type { Reply } from "../../protocol/types.ts";
import { encodePayload, type WireReply } from "../../protocol/wire.ts";
import type { TracedReply } from "../../store/ops/instruction-record.ts";
import type { NewReply, Store, StoreReplyResult } from "../../store/store.ts";
import { isTraceparent, startSpan } from "../../util/tracing.ts";
import { GroupCommit } from "./group-commit.ts";
import type { Session } from "./session.ts";

export interface ReplyIntakeOptions {
  store: Store;
  /**
   * A reply was stored here. With `reply`: it was stored already claimed for this replica's stream of its run
   * (see `holdsRun`), and must be sent there; without: the run streams have something to claim and deliver.
   */
  onReply: (reply?: Reply) => void;
  /** Whether this replica holds an open reply stream of the run (its replies are then stored claimed). */
  holdsRun?: (runId: string) => boolean;
  /** The node is done with this instruction (stored, duplicate, or refused for good): its slot is free. */
  onSettled: (s: Session, instructionId: string) => void;
}

/**
 * Replies arriving on node streams: checked, cut to size, and stored together with every other reply this
 * replica received meanwhile (one commit for many on PostgreSQL), then handed to the run streams.
 */
export class ReplyIntake {
  private readonly o: ReplyIntakeOptions;
  private readonly commits: GroupCommit<NewReply, StoreReplyResult>;

  constructor(o: ReplyIntakeOptions) {
    this.o = o;
    // PostgreSQL: two batches at once, so a fan-out's later replies do not wait for the first one's commit.
    this.commits = new GroupCommit(
      (items) => o.store.storeReplies(items),
      128,
      o.store.backend === "postgres" ? 2 : 1,
    );
  }

  async take(s: Session, b: Record<string, unknown>): Promise<unknown> {
    const r = b as unknown as WireReply;
    if (!isId(r.id)) throw invalid("id", "must be a UUID");
    if (!isId(r.replyTo)) throw invalid("replyTo", "must be a UUID");
    if (!isId(r.runId)) throw invalid("runId", "must be a UUID");
    if (!s.ready) throw invalid("m", "say hello first");
    const error = checkReplyError(r.error);
    const max = this.o.store.options.maxPayloadBytes;
    let payload = error ? new Uint8Array(0) : encodePayload(r.payload);
    let outcome = error;
    // A result the store cannot take still gets an answer to the coordinator: an error reply in its place, so
    // an oversized or absurdly nested result is never silence (and the node is not asked to resend it).
    if (!error && (payload.byteLength > max || tooDeep(r.payload))) {
      outcome = {
        code: "FLEETLINK_E_PAYLOAD_TOO_LARGE",
        message:
          payload.byteLength > max
            ? `reply payload of ${payload.byteLength} bytes exceeds the limit of ${max}`
            : `reply payload nests deeper than ${MAX_JSON_DEPTH} levels`,
      };
      payload = new Uint8Array(0);
    }
    // The run's reply stream is here: store the reply already claimed for it and send it at once.
    const claimed = this.o.holdsRun?.(r.runId) ?? false;
    // The stream schema checked it already; HTTP node replies come through the same check.
    const traceparent = isTraceparent(r.traceparent) ? r.traceparent : undefined;
    const item: TracedReply = {
      id: r.id,
      runId: r.runId,
      nodeId: s.node.id,
      replyTo: r.replyTo,
      payload,
      error: outcome,
      claimed,
      ...(traceparent ? { traceparent } : {}),
    };
    const span = traceparent
      ? startSpan("fleetlink.reply", {
          parent: traceparent,
          kind: "server",
          attributes: { "fleetlink.instruction": r.replyTo, "fleetlink.run": r.runId },
        })
      : undefined;
    const res = await this.commits.add(item).catch((e: unknown) => {
      span?.end(e);
      throw e;
    });
    span?.end(res.ok ? undefined : res.error);
    // Stored, a duplicate, or refused for good: either way the node is done with it.
    if (res.ok || (isFleetlinkError(res.error) && res.error.definite)) this.o.onSettled(s, r.replyTo);
    if (res.ok && !res.duplicate) this.o.onReply(claimed ? res.reply : undefined);
    if (!res.ok) throw res.error;
    return { ok: true, duplicate: res.duplicate, ...(outcome && !error ? { replacedBy: outcome.code } : {}) };
  }
}

/** A node's error outcome, checked and cut to size (a node may not fill the store with error text). */
export const checkReplyError = (e: unknown): { code: string; message: string } | null => {
  if (e === undefined || e === null) return null;
  if (typeof e !== "object" || Array.isArray(e)) throw invalid("error", "must be an object or null");
  const { code, message } = e as { code?: unknown; message?: unknown };
  if (typeof code !== "string" || code.length === 0 || code.length > 200)
    throw invalid("error.code", "must be a non-empty string of at most 200 characters");
  if (typeof message !== "string") throw invalid("error.message", "must be a string");
  return { code, message: truncate(message, MAX_ERROR_MESSAGE_CHARS) };
};
