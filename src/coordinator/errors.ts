import { FleetlinkError, shownCode } from "../protocol/errors.ts";
import { nodeLabel } from "../protocol/node-label.ts";
import type { NodeRef } from "./names.ts";

/** How many failed nodes the message of an IncompleteCallError names, and how much of each one's message. */
const MESSAGE_NODES = 10;
const MESSAGE_TEXT = 160;

const cut = (s: string, n: number) => (s.length <= n ? s : `${s.slice(0, n - 1)}…`);

/** One failed node of an IncompleteCallError: who, and why. */
export interface FailedNode {
  id: string;
  /** Null when the hub's node listing did not name it. */
  name: string | null;
  code: string;
  message: string;
}

/**
 * A quorum call that could not be met: says which nodes failed and why, and what did arrive. Its message
 * names each failed node as `name (…last 8 hex of its id)` with its code and message (the first MESSAGE_NODES
 * nodes, each message cut to MESSAGE_TEXT characters); `errors` (by id) and `failed` have them all, and
 * `JSON.stringify` gives them as node → { code, message }.
 */
export class IncompleteCallError extends FleetlinkError {
  readonly reason: string;
  readonly replies: ReadonlyMap<string, unknown>;
  readonly errors: ReadonlyMap<string, FleetlinkError>;
  /** Every node the call addressed, by id, with its name. */
  readonly nodes: ReadonlyMap<string, NodeRef>;

  constructor(
    reason: string,
    replies: ReadonlyMap<string, unknown>,
    errors: ReadonlyMap<string, FleetlinkError>,
    nodes: ReadonlyMap<string, NodeRef> = new Map(),
  ) {
    const failed = [...errors]
      .slice(0, MESSAGE_NODES)
      .map(
        ([n, e]) =>
          `${nodeLabel(n, nodes.get(n)?.name)}: ${shownCode(e)} ${JSON.stringify(cut(String(e.message), MESSAGE_TEXT))}`,
      );
    if (errors.size > MESSAGE_NODES) failed.push(`${errors.size - MESSAGE_NODES} more (see .errors)`);
    super(
      "INCOMPLETE_CALL",
      `incomplete call: ${reason} (${replies.size} ${replies.size === 1 ? "reply" : "replies"}, ` +
        `${errors.size} failed)${failed.length ? `: ${failed.join("; ")}` : ""}`,
    );
    this.reason = reason;
    this.replies = replies;
    this.errors = errors;
    this.nodes = nodes;
  }

  /** Node ids that failed. */
  get failedNodes(): string[] {
    return [...this.errors.keys()];
  }

  /** The failed nodes with their names, codes and messages, in the order they failed. */
  get failed(): FailedNode[] {
    return [...this.errors].map(([id, e]) => ({
      id,
      name: this.nodes.get(id)?.name ?? null,
      code: shownCode(e),
      message: String(e.message),
    }));
  }

  /** A Map serializes to `{}`: this gives every failed node's code and message, and which nodes replied. */
  override toJSON(): ReturnType<FleetlinkError["toJSON"]> & {
    reason: string;
    replied: string[];
    errors: Record<string, { code: string; message: string }>;
    failed: FailedNode[];
  } {
    return {
      ...super.toJSON(),
      reason: this.reason,
      replied: [...this.replies.keys()],
      failed: this.failed,
      errors: Object.fromEntries(
        [...this.errors].map(([n, e]) => [n, { code: shownCode(e), message: String(e.message) }]),
      ),
    };
  }
}

/**
 * INVALID_ARGUMENT for a call, stream or broadcast addressed to no node (an empty configuration: often
 * `fleet.nodes()` found no node online), before anything is sent to a hub.
 */
export const checkNodesGiven = (nodes: readonly string[], method: string): void => {
  if (nodes.length === 0)
    throw new FleetlinkError(
      "INVALID_ARGUMENT",
      `nodes: ${JSON.stringify(method)} addressed to an empty configuration; give it at least one node ` +
        "(fleet.nodes() lists the nodes online now: is a node agent running and connected?)",
      { field: "nodes" },
    );
};

/**
 * A hub request that did not complete before its caller's deadline (a call's `timeoutMs`). HUB_UNAVAILABLE
 * and indefinite: the replica may have done it; `cause` is the last attempt's failure, naming its URL.
 */
export class DeadlineExceededError extends FleetlinkError {
  constructor(message: string, cause?: unknown) {
    super("HUB_UNAVAILABLE", message, { cause });
  }
}
