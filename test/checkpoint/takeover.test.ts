// A standby takeover that fails is retried with backoff a bounded number of times, then given up with the
// reason in the run's checkpoint status; no attempt leaves an unclaimed reply behind.
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import type { TakeoverStatus } from "../../src/checkpoint/orchestrator.ts";
import { retryDelay } from "../../src/checkpoint/takeover.ts";
import { type CheckpointFleet, startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("standby takeover retries", () => {
  let f: CheckpointFleet;
  let store: CheckpointFleet["store"];
  let hub: CheckpointFleet["hub"];
  let fleet: CheckpointFleet["fleet"];
  beforeEach(async () => {
    f = await startCheckpointFleet();
    ({ store, hub, fleet } = f);
  });
  afterEach(() => f.close());

  const node = async (name: string, restore: () => void = () => {}) =>
    (
      await f.node(name, {
        heartbeatIntervalMs: 200,
        state: { snapshot: () => new Uint8Array([1, 2, 3]), restore },
      })
    ).agent;

  /** A run with host 0 and a standby for it, one checkpoint pushed; no coordinator stream claims replies. */
  const setup = async (standbyRestore: () => void) => {
    const h0 = await node("h0");
    const sb = await node("sb", standbyRestore);
    const run = await store.createRun();
    const cp = hub.checkpoints!;
    await cp.assign(run.id, [h0.nodeId!], [{ hostIdx: 0, nodeId: sb.nodeId! }]);
    expect(await (await cp.startPush(run.id)).done).toMatchObject({ status: "ok" });
    cp.stop();
    cp.startMonitor(50, { attempts: 3, baseDelayMs: 100, maxDelayMs: 400 });
    return { h0, sb, run, cp };
  };
  const settled = async (runId: string): Promise<TakeoverStatus> => {
    for (let i = 0; i < 200; i++) {
      const [t] = await hub.checkpoints!.takeoverStatus(runId);
      if (t && t.status !== "in_progress" && t.status !== "retrying") return t;
      await sleep(50);
    }
    throw new Error("takeover did not settle");
  };

  test("takeover - a failing standby is tried 3 times with backoff, then given up with the reason in the status", async () => {
    let restores = 0;
    const { h0, sb, run } = await setup(() => {
      restores++;
      throw new Error("disk full on the standby");
    });
    const started = Date.now();
    await h0.stop({ timeoutMs: 100 });
    const t = await settled(run.id);
    expect(t).toMatchObject({
      hostIdx: 0,
      from: h0.nodeId,
      to: sb.nodeId,
      status: "failed",
      attempts: 3,
      error: { message: expect.stringMatching(/gave up after 3 attempts; last: .*disk full on the standby/) },
    });
    // Waits of 100 and 200 ms between the three attempts.
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    await sleep(800);
    expect(restores).toBe(3);
    // The status says so over HTTP too, and host 0 is still the failed node.
    const status = await fleet.checkpoints.status(run.id);
    expect(status.takeover).toEqual([t]);
    expect((await fleet.checkpoints.roles(run.id))!.hosts[0]!.nodeId).toBe(h0.nodeId);
    // Every reply to the hub's checkpoint calls was claimed: none is left for a coordinator's stream.
    expect((await store.stats()).replies.pending).toBe(0);
  }, 20_000);

  test("takeover - an offline standby fails fast as host_unavailable, without sending it anything", async () => {
    const { h0, sb, run } = await setup(() => {});
    await sb.stop({ timeoutMs: 100 });
    await sleep(600); // its heartbeat window passes
    const before = (await store.stats()).instructions;
    await h0.stop({ timeoutMs: 100 });
    const t = await settled(run.id);
    expect(t).toMatchObject({
      status: "failed",
      attempts: 3,
      error: { kind: "host_unavailable", message: expect.stringMatching(/standby node .* is offline/) },
    });
    const after = (await store.stats()).instructions;
    expect(after.pending + after.leased + after.done).toBe(before.pending + before.leased + before.done);
  }, 20_000);

  test("takeover - a working standby takes over at the first attempt and the status says so", async () => {
    let restores = 0;
    const { h0, sb, run } = await setup(() => {
      restores++;
    });
    await h0.stop({ timeoutMs: 100 });
    const t = await settled(run.id);
    expect(t).toMatchObject({ status: "ok", from: h0.nodeId, to: sb.nodeId, attempts: 1 });
    expect(restores).toBe(1);
    expect((await fleet.checkpoints.roles(run.id))!.hosts[0]!.nodeId).toBe(sb.nodeId);
    expect((await fleet.checkpoints.status(run.id)).takeover).toEqual([t]);
  }, 20_000);

  test("retryDelay - doubles from the base up to the cap", () => {
    const p = { attempts: 9, baseDelayMs: 2000, maxDelayMs: 60_000 };
    expect([1, 2, 3, 4, 5, 6, 7].map((a) => retryDelay(a, p))).toEqual([
      2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000,
    ]);
  });
});
