// The agent's rules for its identity: one node name per identity file, one process per identity.
import { FleetlinkError } from "../protocol/errors.ts";
import type { NodeIdentity } from "./enroll.ts";

/**
 * A stream online this long before it was replaced belonged to a settled agent: the replacement is the first of
 * a new conflict, not one more of a running one. Longer than the longest replaced back-off (30 s + jitter), so
 * in a running conflict no stream lives this long.
 */
export const SETTLED_MS = 60_000;

/**
 * INVALID_ARGUMENT when an identity belongs to a node of another name than the agent's: today `--identity`
 * would silently run as that node under the other name. There is no rename on the hub: the ways out are to use
 * the identity's name, or to enroll a new node under the new name (and unregister the old one).
 */
export const checkIdentityName = (
  identity: Pick<NodeIdentity, "nodeId" | "name"> | undefined,
  name: string,
  identityFile?: string,
): void => {
  if (!identity?.name || identity.name === name) return;
  const src = identityFile ? `identity file ${identityFile}` : "identity";
  throw new FleetlinkError(
    "INVALID_ARGUMENT",
    `name: the ${src} is node ${JSON.stringify(identity.name)} (${identity.nodeId}), not ${JSON.stringify(name)}. ` +
      `Start it as --name ${identity.name}; or, to have a node named ${name}, use another identity file ` +
      `(${identityFile ? `e.g. --identity .fleetlink/node-${name}.json, ` : ""}which enrolls a new node) and remove ` +
      `the old one with fleetlink nodes unregister ${identity.nodeId}. A node cannot be renamed in place.`,
    { field: "name" },
  );
};

/**
 * Replacements of the agent's stream by another process on the same identity, in a row. The hub keeps the newer of
 * two streams, so two agents on one identity would take turns forever: the count lets one give up. A replacement
 * of a stream that had been online for `settleMs` starts a new count, so the agent that was there first outlasts
 * a newcomer (whose count runs up first).
 */
export class IdentityConflicts {
  private count = 0;
  private liveSince = 0;
  readonly max: number;
  private readonly settleMs: number;

  constructor(max: number, settleMs: number) {
    this.max = max;
    this.settleMs = settleMs;
  }

  /** The agent's stream went online. */
  live(): void {
    this.liveSince = Date.now();
  }

  /** The stream was replaced: whether that started a new count, the count, and whether to give the identity up. */
  replaced(wasLive: boolean): { settled: boolean; count: number; giveUp: boolean } {
    const settled = wasLive && Date.now() - this.liveSince >= this.settleMs;
    this.count = settled ? 0 : this.count + 1;
    return { settled, count: this.count, giveUp: this.count >= this.max };
  }

  /** A loss of another kind ends a run of replacements. */
  reset(): void {
    this.count = 0;
  }
}
