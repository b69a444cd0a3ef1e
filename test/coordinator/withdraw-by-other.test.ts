// A call withdrawn by someone other than the coordinator waiting on it (an operator in the dashboard, another
// principal over HTTP): with `deliver` the coordinator hears CANCELLED at once, as an explicit error reply,
// instead of waiting out its timeout; the node's running handler is told to stop.
import { afterEach, expect, test } from "vitest";
import { IncompleteCallError } from "../../src/coordinator/errors.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

let f: TestFleet;
afterEach(async () => {
  await f.close();
});

const until = async (what: string, ok: () => Promise<boolean>, ms = 5000) => {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test("withdraw - a call withdrawn by another principal with deliver ends for its waiting coordinator with CANCELLED, long before its timeout", async () => {
  f = await startFleet();
  let stopped = false;
  const logged: { level: string; msg?: string }[] = [];
  const log = {
    debug: (_o: object, msg?: string) => logged.push({ level: "debug", msg }),
    warn: (_o: object, msg?: string) => logged.push({ level: "warn", msg }),
  };
  const quick = await f.node("quick", { work: (p) => p });
  const stuck = await f.node(
    "stuck",
    {
      work: (_p, ctx) =>
        new Promise((_resolve, reject) =>
          ctx.signal.addEventListener("abort", () => {
            stopped = true;
            reject(new Error("stopped"));
          }),
        ),
    },
    { log },
  );
  const fleet = await f.fleet();
  const run = await fleet.createRun();
  const t0 = Date.now();
  const call = run.call([quick.nodeId!, stuck.nodeId!], "work", 1, { quorum: "all", timeoutMs: 30_000 });
  const settled = call.then(
    () => undefined,
    (e: unknown) => e,
  );

  let held: string | undefined;
  await until("the stuck node's instruction to be delivered", async () => {
    const ins = await f.store.nodeInstructions(stuck.nodeId!, {});
    held = ins.find((i) => i.runId === run.id && i.state === "leased")?.id;
    return held !== undefined;
  });
  const res = await fetch(`${f.url}/v1/runs/${run.id}/instructions/withdraw`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ ids: [held], deliver: true }),
  });
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ withdrawn: [held] });

  const e = await settled;
  expect(e).toBeInstanceOf(IncompleteCallError);
  const err = e as IncompleteCallError;
  expect(Date.now() - t0).toBeLessThan(10_000);
  expect([...err.replies.keys()]).toEqual([quick.nodeId]);
  expect(err.failed).toEqual([
    expect.objectContaining({ id: stuck.nodeId, name: "stuck", code: "FLEETLINK_E_CANCELLED" }),
  ]);
  await until("the stuck handler to be told to stop", async () => stopped);
  // Stopping because the call was withdrawn is not a handler failure in the node's log.
  await until("the node to log the stop", async () =>
    logged.some((l) => l.msg === "handler stopped: its instruction was cancelled"),
  );
  expect(logged.filter((l) => l.msg === "handler failed")).toEqual([]);
  // Delivered once: nothing is left to claim for the run.
  expect(await f.store.claimReplies({ runId: run.id })).toEqual([]);
  // An operator's withdraw is in the audit log, with what it withdrew.
  await until("the audit entry", async () => {
    const r = await fetch(`${f.url}/v1/audit`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const { entries } = (await r.json()) as {
      entries: { action: string; target: string; detail: unknown }[];
    };
    return entries.some(
      (x) => x.action === "run.withdraw" && x.target === run.id && JSON.stringify(x.detail).includes(held!),
    );
  });
});

test("withdraw - a body field of the wrong type is refused naming it, and nothing is withdrawn", async () => {
  f = await startFleet();
  const fleet = await f.fleet();
  const run = await fleet.createRun();
  const res = await fetch(`${f.url}/v1/runs/${run.id}/instructions/withdraw`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ ids: [], deliver: "yes" }),
  });
  expect(res.status).toBe(400);
  expect(await res.text()).toMatch(/deliver/);
});
