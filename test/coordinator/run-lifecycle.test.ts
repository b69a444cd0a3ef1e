// A run's lifecycle seen from the SDK: pending until its first push, running while it has work, finished by
// finish() (for everyone); close() only ends the handle.
import { afterEach, expect, test } from "vitest";
import { newId } from "../../src/protocol/ids.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { startFleet, type TestFleet } from "../helpers/fleet.ts";

let f: TestFleet;
afterEach(async () => {
  await f.close();
});

test("run lifecycle - pending until the first call, running while it works, finish() ends it once", async () => {
  f = await startFleet();
  const node = await f.node("echo", { echo: (p) => p });
  const fleet = await f.fleet();
  const run = await fleet.createRun();
  const created = await run.status();
  expect(created).toMatchObject({ id: run.id, status: "pending", reason: null });

  const res = await run.call([node.nodeId!], "echo", 7, { quorum: "all", timeoutMs: 5000 });
  expect([...res.replies.values()]).toEqual([7]);
  expect((await run.status()).status).toBe("running");
  expect(
    (await fleet.http.request<{ runs: { id: string }[] }>("GET", "/v1/runs?status=running")).runs,
  ).toEqual([expect.objectContaining({ id: run.id })]);

  const done = await run.finish("all good");
  expect(done).toMatchObject({ id: run.id, status: "finished", reason: "all good" });
  expect(done.updatedAt).toBeGreaterThanOrEqual(created.updatedAt);
  // Idempotent: finishing a finished run resolves with the record as it is (the first finisher's reason).
  expect(await run.finish("again")).toEqual(done);
  await rejectsWith(run.call([node.nodeId!], "echo", 1, { timeoutMs: 2000 }), "RUN_FINISHED");
});

test("run lifecycle - a run with nothing pushed finishes from pending; an unknown run is RUN_NOT_FOUND", async () => {
  f = await startFleet();
  const fleet = await f.fleet();
  const run = await fleet.createRun();
  expect(await run.finish()).toMatchObject({ status: "finished", reason: null });
  const gone = await fleet.createRun();
  await f.store.transitionRun(gone.id, "pending", "finished");
  await f.store.cleanup(0);
  await rejectsWith(gone.status(), "RUN_NOT_FOUND");
  await rejectsWith(gone.finish(), "RUN_NOT_FOUND");
  await rejectsWith(fleet.run(newId()), "RUN_NOT_FOUND");
});

test("run lifecycle - close() and `await using` end the handle, not the run", async () => {
  f = await startFleet();
  const fleet = await f.fleet();
  let id = "";
  {
    await using run = await fleet.createRun();
    id = run.id;
    expect(fleet.runs.has(run)).toBe(true);
  }
  expect([...fleet.runs].map((r) => r.id)).not.toContain(id);
  const again = await fleet.run(id);
  expect((await again.status()).status).toBe("pending");
  await again.close();
  await again.close();
  expect((await again.status()).status).toBe("pending");
});
