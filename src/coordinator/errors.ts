import { FleetlinkError } from "../protocol/errors.ts";

/** A quorum call that could not be met: says which nodes failed and why, and what did arrive. */
export class IncompleteCallError extends FleetlinkError {
  readonly replies: ReadonlyMap<string, unknown>;
  readonly errors: ReadonlyMap<string, FleetlinkError>;

  constructor(
    reason: string,
    replies: ReadonlyMap<string, unknown>,
    errors: ReadonlyMap<string, FleetlinkError>,
  ) {
    const failed = [...errors].map(([n, e]) => `${n.slice(-8)}: ${e.code}`).join(", ");
    super(
      "INCOMPLETE_CALL",
      `incomplete call (${reason}; replies: ${replies.size}, errors: ${errors.size}${failed ? ` [${failed}]` : ""})`,
    );
    this.replies = replies;
    this.errors = errors;
  }

  /** Node ids that failed. */
  get failedNodes(): string[] {
    return [...this.errors.keys()];
  }
}
