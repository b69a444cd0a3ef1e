import { isDeepStrictEqual } from "node:util";
import { KIT_TIMINGS } from "../cluster.ts";
import { fail, type Scenario, type ScenarioContext, sleep } from "../scenario.ts";

/** The longest a node may take to acknowledge an instruction it received. */
export const ACK_BOUND_MS = 1000;

/** Every delivery of the instruction was acknowledged (not refused) within ACK_BOUND_MS. */
export const expectAcked = async (ctx: ScenarioContext, id: string): Promise<void> => {
  const tap = ctx.cluster.tap;
  const first = tap.deliveries(id)[0];
  if (!first) return fail(`the hub never delivered instruction ${id}`);
  await ctx
    .until(
      () => tap.deliveries(id).every((d) => d.ackedAt !== undefined || Date.now() - d.at > ACK_BOUND_MS),
      ACK_BOUND_MS + 500,
      "",
    )
    .catch(() => undefined);
  for (const d of tap.deliveries(id)) {
    if (d.ackedAt === undefined)
      fail(
        `instruction ${id} was never acknowledged (${ACK_BOUND_MS} ms after delivery): a node answers each ` +
          "instruction request with {accepted: true} at once, before its handler runs",
      );
    if (d.refused) fail(`the node refused instruction ${id} with an err frame instead of accepting it`);
    if (d.ackedAt! - d.at > ACK_BOUND_MS)
      fail(
        `instruction ${id} was acknowledged ${d.ackedAt! - d.at} ms after delivery (bound ${ACK_BOUND_MS} ms): ` +
          "acknowledge at once, not when the handler is done",
      );
  }
};

export const expectStartedOnce = (
  ctx: ScenarioContext,
  proc: { startsOf(id: string): number },
  id: string,
  why = "",
) => {
  const n = proc.startsOf(id);
  if (n === 0)
    fail(
      `calls.log ($FLEETLINK_WORK_DIR/calls.log) has no "start ${id} <method>" line: every handler run appends one`,
    );
  if (n > 1)
    fail(`the node ran instruction ${id} ${n} times (calls.log); it must run each id at most once${why}`);
  void ctx;
};

const echo: Scenario = {
  name: "echo",
  summary: `an echo call is acknowledged within ${ACK_BOUND_MS} ms and answered with its payload unchanged, its handler run once`,
  boundMs: 5000,
  async run(ctx) {
    const { proc } = await ctx.node();
    const payload = { text: "conformance ✓", n: 42, nested: { list: [1, "two", null, true, 2.5] } };
    const p = await ctx.push("echo", payload);
    const r = await ctx.reply(p, 5000, "the echo reply");
    if (r.error) fail(`echo answered an error: ${r.error.code}: ${r.error.message}`);
    if (!isDeepStrictEqual(r.payload, payload))
      fail(`echo answered ${JSON.stringify(r.payload)}, not its payload ${JSON.stringify(payload)}`);
    await expectAcked(ctx, p.id);
    expectStartedOnce(ctx, proc, p.id);
  },
};

const handlerError: Scenario = {
  name: "handler-error",
  summary: "a handler that throws becomes an error reply (a code, and a message containing the handler's)",
  boundMs: 5000,
  async run(ctx) {
    const { proc } = await ctx.node();
    const message = `conformance failure ${Math.random().toString(36).slice(2, 10)}`;
    const p = await ctx.push("fail", { message });
    const r = await ctx.reply(p, 5000, "the reply to fail");
    if (!r.error) fail(`fail answered a result (${JSON.stringify(r.payload)}), not an error reply`);
    if (typeof r.error!.code !== "string" || r.error!.code.length === 0)
      fail("the error reply has no code (reply.error = {code, message})");
    if (!r.error!.message.includes(message))
      fail(
        `the error reply's message ${JSON.stringify(r.error!.message)} does not contain ${JSON.stringify(message)}`,
      );
    await expectAcked(ctx, p.id);
    expectStartedOnce(ctx, proc, p.id);
  },
};

const WINDOW_SLEEP_MS = 1200;
const inflightWindow: Scenario = {
  name: "inflight-window",
  summary: `8 sleeps of ${WINDOW_SLEEP_MS} ms with the hub's window at ${KIT_TIMINGS.maxInflight}: the node runs ${KIT_TIMINGS.maxInflight} at once and all 8 answer`,
  boundMs: 2 * WINDOW_SLEEP_MS + 2500,
  async run(ctx) {
    const { proc } = await ctx.node();
    const t0 = Date.now();
    const pushed = await Promise.all(
      Array.from({ length: 8 }, () => ctx.push("sleep", { ms: WINDOW_SLEEP_MS })),
    );
    const ids = pushed.map((p) => p.id);
    // Starts as calls.log shows them (sampled), answers as the coordinator receives them.
    const started = new Map<string, number>();
    const answered = new Map<string, number>();
    for (const p of pushed) p.result.then(() => answered.set(p.id, Date.now())).catch(() => undefined);
    const bound = this.boundMs;
    while (answered.size < 8 && Date.now() - t0 < bound) {
      for (const s of proc.starts())
        if (ids.includes(s.instructionId) && !started.has(s.instructionId))
          started.set(s.instructionId, Date.now());
      await sleep(20);
    }
    for (const s of proc.starts())
      if (ids.includes(s.instructionId) && !started.has(s.instructionId))
        started.set(s.instructionId, Date.now());
    // A handler ends when the node sends its reply (the tap's time; the coordinator hears of it later).
    const sent = new Map<string, number>();
    for (const e of ctx.cluster.tap.requests("reply", t0)) {
      const to = (e.frame.b as { replyTo?: string } | undefined)?.replyTo;
      if (to && ids.includes(to) && !sent.has(to)) sent.set(to, e.at);
    }
    const events = [
      ...[...started.values()].map((at) => ({ at, d: 1 })),
      ...ids.filter((id) => answered.has(id)).map((id) => ({ at: sent.get(id) ?? answered.get(id)!, d: -1 })),
    ].sort((a, b) => a.at - b.at || a.d - b.d);
    let running = 0;
    let most = 0;
    for (const e of events) {
      running += e.d;
      most = Math.max(most, running);
    }
    if (answered.size < 8)
      fail(
        `${answered.size} of 8 sleeps answered within ${bound} ms (at most ${most} ran at once, hub window ${KIT_TIMINGS.maxInflight})`,
      );
    for (const p of pushed) {
      const r = await p.result;
      if (r.error || !isDeepStrictEqual(r.payload, { slept: WINDOW_SLEEP_MS }))
        fail(`sleep answered ${JSON.stringify(r.error ?? r.payload)}, not {"slept":${WINDOW_SLEEP_MS}}`);
    }
    if (most < KIT_TIMINGS.maxInflight)
      fail(
        `at most ${most} of 8 sleeps ran at once with the hub's window at ${KIT_TIMINGS.maxInflight}: acknowledge each instruction at once and run handlers concurrently`,
      );
    for (const id of ids) expectStartedOnce(ctx, proc, id);
  },
};

const LONG_MS = Math.round(3.5 * KIT_TIMINGS.leaseMs);
const leaseExtension: Scenario = {
  name: "lease-extension",
  summary: `a ${LONG_MS} ms handler (3.5 leases of ${KIT_TIMINGS.leaseMs} ms) is not redelivered: the node reports progress`,
  boundMs: LONG_MS + 3000,
  async run(ctx) {
    const { proc } = await ctx.node();
    const p = await ctx.push("sleep", { ms: LONG_MS });
    const r = await ctx.reply(p, this.boundMs, "the reply to the long sleep");
    if (r.error || !isDeepStrictEqual(r.payload, { slept: LONG_MS }))
      fail(`sleep answered ${JSON.stringify(r.error ?? r.payload)}, not {"slept":${LONG_MS}}`);
    const [ins] = await ctx.cluster.admin.getInstructions(ctx.run.id, [p.id]);
    const deliveries = ctx.cluster.tap.deliveries(p.id).length;
    if ((ins?.attempts ?? 0) > 1 || deliveries > 1)
      fail(
        `instruction ${p.id} was delivered ${Math.max(ins?.attempts ?? 0, deliveries)} times: its lease (${KIT_TIMINGS.leaseMs} ms) ran out while the handler ran; report progress with the running ids every leaseMs/3`,
      );
    expectStartedOnce(ctx, proc, p.id);
  },
};

export const basicScenarios: Scenario[] = [echo, handlerError, inflightWindow, leaseExtension];
