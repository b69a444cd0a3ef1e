import { isDeepStrictEqual } from "node:util";
import { newId } from "../../protocol/ids.ts";
import { KIT_TIMINGS } from "../cluster.ts";
import { fail, type Scenario, type ScenarioContext, sleep } from "../scenario.ts";
import { expectStartedOnce } from "./basic.ts";

/**
 * The first hello the node said after `since`, if it came before `before`: it must name `id` in its
 * `inflight` (the node still ran it, or its reply was not acknowledged yet).
 */
const expectInflightHello = (
  ctx: ScenarioContext,
  nodeId: string,
  id: string,
  since: number,
  before: number,
) => {
  const hello = ctx.cluster.tap.requests("hello", since, nodeId)[0];
  if (!hello || hello.at > before) return;
  const inflight = (hello.frame.b as { inflight?: unknown } | undefined)?.inflight;
  if (!Array.isArray(inflight) || !inflight.includes(id))
    fail(
      `the node's hello after the reconnect had inflight ${JSON.stringify(inflight ?? null)}, without ${id}, which it ` +
        "still ran or had not had acknowledged: hello lists every such instruction",
    );
};

/**
 * Past the lease (1500 ms) with room for the redelivery to reach the node while the handler still runs: 3 s more.
 * With 1.5 s (a 3000 ms handler), a loaded machine (the suite's two workers beside other work) once delivered it
 * after the handler had ended, and a node that does not dedupe passed (its answered reply was resent).
 */
const REDELIVER_SLEEP_MS = 4500;
/** From the handler's start: the lease has run out, the sweep (100 ms) and the dispatch have had their turn. */
const REDELIVERY_WAIT_MS = KIT_TIMINGS.leaseMs + 1000;
const redeliveryOnce: Scenario = {
  name: "redelivery-once",
  summary: `the hub never sees the node's progress for a ${REDELIVER_SLEEP_MS} ms handler, so its lease runs out and the hub delivers it again on the same connection: the node runs it once, one reply is stored, under one reply id`,
  boundMs: REDELIVER_SLEEP_MS + 5000,
  async run(ctx) {
    const { proc } = await ctx.node();
    const { cluster } = ctx;
    const tap = cluster.tap;
    // Through the tap, not a cut: a node that reconnects keeps its lease by naming the instruction in hello's
    // inflight, so only a lease that runs out while the node stays connected surely brings a redelivery.
    const p = await ctx.push("sleep", { ms: REDELIVER_SLEEP_MS });
    tap.holdProgress(p.id);
    const attempts = async () => (await cluster.admin.getInstructions(ctx.run.id, [p.id]))[0]?.attempts ?? 0;
    try {
      await ctx.until(() => proc.startsOf(p.id) > 0, 3000, "the sleep handler to start (calls.log)");
      const startedAt = Date.now();
      await ctx.until(
        async () =>
          tap.deliveries(p.id).length >= 2 ||
          (await attempts()) >= 2 ||
          Date.now() - startedAt > REDELIVERY_WAIT_MS,
        REDELIVERY_WAIT_MS + 1000,
        "the lease to run out",
      );
    } finally {
      tap.releaseProgress(p.id);
    }
    // A check that cannot fail checks nothing: without a second delivery this scenario proves no dedupe.
    const delivered = Math.max(tap.deliveries(p.id).length, await attempts());
    if (delivered < 2)
      fail(
        `could not force a redelivery: ${REDELIVERY_WAIT_MS} ms after the handler started, with its progress kept from the hub, instruction ${p.id} was delivered ${delivered} time(s) (the handler ran ${REDELIVER_SLEEP_MS} ms; a node must not reply before its handler is done)`,
      );
    const r = await ctx.reply(p, REDELIVER_SLEEP_MS + 3000, "the reply to the redelivered sleep");
    if (r.error || !isDeepStrictEqual(r.payload, { slept: REDELIVER_SLEEP_MS }))
      fail(`sleep answered ${JSON.stringify(r.error ?? r.payload)}, not {"slept":${REDELIVER_SLEEP_MS}}`);
    // A second run would start at once on the redelivery; its reply lands a moment after the first.
    await sleep(300);
    const total = Math.max(tap.deliveries(p.id).length, await attempts());
    expectStartedOnce(
      ctx,
      proc,
      p.id,
      ` (it was delivered ${total} times on the same connection: a redelivered id that still runs is acknowledged and ignored)`,
    );
    const stored = await cluster.admin.getReplies(ctx.run.id, [p.id]);
    if (stored.length !== 1) fail(`${stored.length} replies to ${p.id} are stored, not one`);
    const ids = [...new Set(tap.replyIds(p.id))];
    if (ids.length > 1)
      fail(
        `the node answered the redelivered instruction under ${ids.length} reply ids (${ids.join(", ")}), not one`,
      );
  },
};

const replyResend: Scenario = {
  name: "reply-resend",
  summary:
    "the hub stores a reply and drops the connection before answering it: the node reconnects and resends it with the SAME reply id (answered duplicate)",
  boundMs: 10_000,
  async run(ctx) {
    const { proc, nodeId } = await ctx.node();
    const { cluster } = ctx;
    // Long enough to arm the fault before the node replies.
    const p = await ctx.push("sleep", { ms: 300 });
    let cutAt = 0;
    cluster.faults.afterStore(p.id, () => {
      cutAt = Date.now();
      for (const r of cluster.replicas) r.proxy.cut();
    });
    const r = await ctx.reply(p, 5000, "the reply to the sleep");
    if (r.error) fail(`sleep answered an error: ${r.error.code}: ${r.error.message}`);
    await ctx.until(
      () => cluster.faults.repliesTo(p.id).length >= 2,
      8000,
      () =>
        `the node to resend its reply after the hub dropped the connection before answering it (it sent ${cluster.faults.repliesTo(p.id).length} reply in 8 s): a reply is resent until the hub answers it`,
    );
    const calls = cluster.faults.repliesTo(p.id);
    const ids = [...new Set(calls.map((c) => c.item.id))];
    if (ids.length > 1) {
      const r2 = calls.find((c) => c.item.id !== calls[0]!.item.id)!.result;
      const answer = r2.ok ? (r2.duplicate ? "duplicate" : "stored") : r2.error.code;
      fail(
        `the node resent its reply with a new reply id (${ids.join(", ")}; the hub answered the resend ${answer}): a reply keeps its id until the hub answers it, so that a resend is told apart from another answer`,
      );
    }
    const resend = calls[1]!.result;
    if (!resend.ok || !resend.duplicate)
      fail(`the hub did not answer the resend as a duplicate: ${JSON.stringify(resend)}`);
    expectStartedOnce(ctx, proc, p.id);
    const stored = await cluster.admin.getReplies(ctx.run.id, [p.id]);
    if (stored.length !== 1) fail(`${stored.length} replies to ${p.id} are stored, not one`);
    expectInflightHello(ctx, nodeId, p.id, cutAt, calls[1]!.at);
  },
};

const superseded: Scenario = {
  name: "superseded",
  summary:
    "a newer session of the node is opened through the store (as another replica would): the hub closes the old stream (4000, or 4001 if a heartbeat finds it first) and the node comes back within 10 s",
  boundMs: 13_000,
  async run(ctx) {
    const { nodeId } = await ctx.node();
    const { cluster } = ctx;
    const t0 = Date.now();
    const fake = newId();
    await cluster.admin.openSession({ nodeId, sessionId: fake, keep: [] });
    // 4000 when the replica's fencing check finds it first, 4001 when the node's next heartbeat does.
    await ctx.until(
      () =>
        cluster.tap.closes(nodeId, t0).some((c) => c.by === "hub" && (c.code === 4000 || c.code === 4001)),
      3000,
      "the hub to close the superseded stream (4000 or 4001)",
    );
    const closedAt = Date.now();
    await ctx.until(
      async () => {
        const s = (await cluster.admin.getSessions([nodeId])).get(nodeId);
        return s !== fake && cluster.replicaOf(nodeId) !== undefined;
      },
      10_000,
      "the node to come back (a new session) within 10 s of the close",
    );
    const back = Date.now() - closedAt;
    const p = await ctx.push("echo", { back });
    const r = await ctx.reply(p, 5000, "an echo after the node came back");
    if (r.error) fail(`echo after coming back answered an error: ${r.error.code}: ${r.error.message}`);
  },
};

const reconnect: Scenario = {
  name: "reconnect",
  summary:
    "the node's replica is killed: the node reconnects to the other replica (both in FLEETLINK_HUB) within 10 s and a call succeeds",
  boundMs: 15_000,
  async run(ctx) {
    const { nodeId } = await ctx.node();
    const { cluster } = ctx;
    const was = cluster.replicaOf(nodeId);
    if (!was) return fail("the node is not connected to any replica");
    const other = cluster.replicas[1 - was.index]!;
    await cluster.kill(was);
    await ctx.until(
      () => cluster.replicaOf(nodeId) === other,
      10_000,
      `the node to reconnect to the other replica (${other.proxy.url}) within 10 s after ${was.proxy.url} died`,
    );
    const p = await ctx.push("echo", { after: "reconnect" });
    const r = await ctx.reply(p, 5000, "an echo after the reconnect");
    if (r.error) fail(`echo after the reconnect answered an error: ${r.error.code}: ${r.error.message}`);
  },
};

const SLOW_MS = 6000;
const slowHub: Scenario = {
  name: "slow-hub",
  summary: `the hub takes ${SLOW_MS} ms to store each reply (a slow hub): the node waits or resends with the same reply id, runs the handler once, one reply is stored`,
  boundMs: SLOW_MS + 6000,
  async run(ctx) {
    const { proc } = await ctx.node();
    const { cluster } = ctx;
    cluster.faults.delayMs = SLOW_MS;
    const p = await ctx.push("echo", { slow: true });
    const r = await ctx.reply(p, SLOW_MS + 5000, "the echo reply from a slow hub");
    cluster.faults.delayMs = 0;
    if (r.error) fail(`echo answered an error: ${r.error.code}: ${r.error.message}`);
    // Resends the node made while the first store was still running land a little later.
    await sleep(500);
    // The lease runs out during a slow store: a node that runs the redelivery again is named for that first.
    expectStartedOnce(ctx, proc, p.id);
    const ids = [...new Set(cluster.tap.replyIds(p.id))];
    if (ids.length > 1)
      fail(
        `the node sent its reply under ${ids.length} reply ids (${ids.join(", ")}) while the hub was slow to answer: a reply keeps its id until the hub answers it`,
      );
    const stored = await cluster.admin.getReplies(ctx.run.id, [p.id]);
    if (stored.length !== 1) fail(`${stored.length} replies to ${p.id} are stored, not one`);
  },
};

export const faultScenarios: Scenario[] = [redeliveryOnce, replyResend, slowHub, superseded, reconnect];
