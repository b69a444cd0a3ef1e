import { isDeepStrictEqual } from "node:util";
import { fail, type Scenario, ScenarioSkip, sleep } from "../scenario.ts";

const LEAVE_SLEEP_MS = 1500;
const LEAVE_EXIT_MS = LEAVE_SLEEP_MS + 5000;
const leave: Scenario = {
  name: "leave",
  summary: `SIGTERM during a ${LEAVE_SLEEP_MS} ms handler: it finishes, its reply is stored, the node says leave (offline at once) and exits 0 within ${LEAVE_EXIT_MS} ms`,
  boundMs: LEAVE_EXIT_MS + 1000,
  async run(ctx) {
    const { proc, nodeId } = await ctx.node();
    const { cluster } = ctx;
    const p = await ctx.push("sleep", { ms: LEAVE_SLEEP_MS });
    await ctx.until(() => proc.startsOf(p.id) > 0, 3000, "the sleep handler to start (calls.log)");
    const t0 = Date.now();
    ctx.expectExit();
    proc.signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exit = await Promise.race([
      proc.exited,
      new Promise<undefined>((r) => {
        timer = setTimeout(() => r(undefined), LEAVE_EXIT_MS);
      }),
    ]);
    clearTimeout(timer);
    if (!exit) fail(`the node did not exit within ${LEAVE_EXIT_MS} ms of SIGTERM`);
    const stored = await cluster.admin.getReplies(ctx.run.id, [p.id]);
    if (stored.length === 0)
      fail(
        `the node exited (${proc.describeExit()}) without replying to the instruction it was running: a graceful stop finishes running handlers and gets their replies acknowledged`,
      );
    const r = await ctx.reply({ id: p.id, result: p.result }, 2000, "the reply of the handler");
    if (r.error || !isDeepStrictEqual(r.payload, { slept: LEAVE_SLEEP_MS }))
      fail(
        `the handler running at SIGTERM answered ${JSON.stringify(r.error ?? r.payload)}, not {"slept":${LEAVE_SLEEP_MS}}`,
      );
    if (exit!.code !== 0) fail(`after SIGTERM ${proc.describeExit()} (expected exit code 0)`);
    const leaves = cluster.tap.requests("leave", t0, nodeId);
    if (leaves.length === 0)
      fail(
        "the node closed without saying leave: a graceful stop sends leave after its replies are acknowledged",
      );
    const replied = cluster.tap.replyIds(p.id).length > 0 ? cluster.faults.repliesTo(p.id)[0]?.at : undefined;
    if (replied !== undefined && leaves[0]!.at < replied)
      fail("the node said leave before its running handler's reply was stored: leave comes last");
    if (await ctx.supports("leave")) {
      const node = await cluster.admin.getNode(nodeId);
      if (node.status !== "offline")
        fail(`the node is ${node.status} after its leave; the hub marks a node that left offline at once`);
    }
  },
};

const REFUSAL_WINDOW_MS = 10_000;
const MAX_REFUSED_HELLOS = 3;
const versionRefusal: Scenario = {
  name: "version-refusal",
  summary: `a hub that speaks only protocol 99 refuses the node (UNSUPPORTED_PROTOCOL, close 4002): it stops retrying (at most ${MAX_REFUSED_HELLOS} hellos in ${REFUSAL_WINDOW_MS / 1000} s)`,
  boundMs: REFUSAL_WINDOW_MS + 5000,
  async run(ctx) {
    const { cluster } = ctx;
    // The node must be enrolled already (its identity in the work dir): the refusing hub is the only one it gets.
    await ctx.node();
    await ctx.stopNode();
    const refusing = await ctx.refusingReplica();
    if (!(await ctx.supports("protocols")))
      throw new ScenarioSkip(
        "these hubs have no `protocols` option (protocol versioning is not in this build)",
      );
    const t0 = Date.now();
    const proc = ctx.spawnNode([refusing.proxy.url]);
    try {
      const hellos = () => cluster.tap.requests("hello", t0).filter((e) => e.replica === refusing.index);
      await ctx.until(() => hellos().length > 0 || !proc.running, 10_000, "the node to say hello");
      if (hellos().length === 0) fail(`the node never said hello: ${proc.describeExit()}`);
      const first = hellos()[0]!.at;
      await sleep(Math.max(0, first + REFUSAL_WINDOW_MS - Date.now()));
      const n = hellos().filter((e) => e.at <= first + REFUSAL_WINDOW_MS).length;
      if (n > MAX_REFUSED_HELLOS)
        fail(
          `the node said hello ${n} times in ${REFUSAL_WINDOW_MS / 1000} s to a hub that refused its protocol (close 4002): it must stop (or not retry with the same version)`,
        );
    } finally {
      await proc.stop();
    }
  },
};

export const lifecycleScenarios: Scenario[] = [leave, versionRefusal];
