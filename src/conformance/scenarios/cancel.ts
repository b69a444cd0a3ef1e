import { FleetlinkError } from "../../protocol/errors.ts";
import { fail, type Scenario, sleep } from "../scenario.ts";

/** How long the node runs the `sleep` handler before the kit withdraws it. */
const WITHDRAW_AFTER_MS = 300;
/** How long the sleep runs if nobody stops it: it ends inside the watch window, so an ignored cancel shows. */
const SLEEP_MS = 1000;
/** How long after the withdraw the node must stay silent about the instruction. */
const SILENCE_MS = 2000;

/**
 * The cancel duty (docs/protocol.md): an instruction withdrawn while the node runs it is sent to the node as a
 * `cancel` event; the node stops the handler and sends no reply for it. The `sleep` handler ends on its own
 * inside the watch window, so a node that ignores the event replies, and fails here.
 */
const cancel: Scenario = {
  name: "cancel",
  summary:
    `a sleep withdrawn ${WITHDRAW_AFTER_MS} ms into its run is sent a cancel event, and the node sends no reply ` +
    `frame for it in the next ${SILENCE_MS / 1000} s (its handler would end within them)`,
  boundMs: 10_000,
  async run(ctx) {
    const { proc, nodeId } = await ctx.node();
    const tap = ctx.cluster.tap;
    const p = await ctx.push("sleep", { ms: SLEEP_MS });
    await ctx.until(
      () => proc.startsOf(p.id) > 0,
      5000,
      `the node to start instruction ${p.id} (a "start ${p.id} sleep" line in calls.log)`,
    );
    await sleep(WITHDRAW_AFTER_MS);
    if (tap.replyIds(p.id).length > 0)
      fail(
        `the node replied to a sleep of ${SLEEP_MS} ms within ${WITHDRAW_AFTER_MS} ms of starting it: ` +
          "sleep must wait its `ms`",
      );
    const withdrawnAt = Date.now();
    await ctx.run.cancel([p.id], new FleetlinkError("CANCELLED", "conformance: cancel scenario"));
    const told = () => tap.sentEvents("cancel", nodeId).some((e) => eventNames(e.frame.b, p.id));
    await ctx.until(
      told,
      2000,
      `the hub to send the node a cancel event for ${p.id} (a kit fault, not the node's)`,
    );
    await ctx.until(
      () => Date.now() - withdrawnAt >= SILENCE_MS || tap.replyIds(p.id).length > 0,
      SILENCE_MS + 1000,
      "",
    );
    const replies = tap.requests("reply").filter((e) => replyTo(e.frame.b) === p.id);
    if (replies.length > 0)
      fail(
        `the node sent ${replies.length} reply frame(s) for instruction ${p.id}, the first ` +
          `${replies[0]!.at - withdrawnAt} ms after it was withdrawn and the hub sent {"t":"evt","m":"cancel",` +
          `"b":{"ids":["${p.id}"],...}}: on a cancel event, stop the handler and send no reply for it ` +
          "(docs/protocol.md, duties: stop cancelled handlers)",
      );
  },
};

const eventNames = (b: unknown, id: string): boolean =>
  Array.isArray((b as { ids?: unknown } | undefined)?.ids) && (b as { ids: unknown[] }).ids.includes(id);

const replyTo = (b: unknown): unknown => (b as { replyTo?: unknown } | undefined)?.replyTo;

export const cancelScenarios: readonly Scenario[] = [cancel];
