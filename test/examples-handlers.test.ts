// examples/handlers.mjs, the handlers module docs/handlers.md shows: loaded as `fleetlink node --handlers` loads
// it, served by a node agent through a real hub, and idempotent by ctx.instructionId across redeliveries and
// restarts.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadHandlers } from "../src/cli/node.ts";
import type { HandlerContext } from "../src/node/handler.ts";
import { startFleet } from "./helpers/fleet.ts";

const root = join(import.meta.dirname, "..");
const example = join(root, "examples/handlers.mjs");
let work: string;
const saved = process.env.FLEETLINK_WORK_DIR;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "fleetlink-handlers-example-"));
  process.env.FLEETLINK_WORK_DIR = work;
});
afterAll(() => {
  if (saved === undefined) delete process.env.FLEETLINK_WORK_DIR;
  else process.env.FLEETLINK_WORK_DIR = saved;
  rmSync(work, { recursive: true, force: true });
});

/** A fresh copy of the module (as a restarted node would load it): its ledger is read again. */
let loads = 0;
const load = async () =>
  (await import(`${example}?load=${++loads}`)) as Record<string, (p: unknown, c: HandlerContext) => unknown>;

const ctx = (instructionId: string, attempts: number): HandlerContext => ({
  instructionId,
  runId: "0193a000-0000-7000-8000-000000000001",
  method: "deposit",
  attempts,
  nodeId: "0193a000-0000-7000-8000-000000000002",
  signal: new AbortController().signal,
});

describe("examples/handlers.mjs", () => {
  test("handlers example - a redelivered instruction (same instructionId) is applied once, also after a restart", async () => {
    const h = await load();
    const first = (await h.deposit!({ account: "acme", amount: 5 }, ctx("i-1", 1))) as Record<
      string,
      unknown
    >;
    expect(first).toMatchObject({ balance: 5, replayed: false, instructionId: "i-1" });
    const again = (await h.deposit!({ account: "acme", amount: 5 }, ctx("i-1", 2))) as Record<
      string,
      unknown
    >;
    expect(again).toMatchObject({ balance: 5, replayed: true, attempts: 2 });
    const next = (await h.deposit!({ account: "acme", amount: 3 }, ctx("i-2", 1))) as Record<string, unknown>;
    expect(next).toMatchObject({ balance: 8, replayed: false });
    // Restarted: the ledger remembers both.
    const restarted = await load();
    expect(await restarted.deposit!({ account: "acme", amount: 5 }, ctx("i-1", 3))).toMatchObject({
      balance: 5,
      replayed: true,
    });
    expect(await restarted.deposit!({ account: "acme", amount: 1 }, ctx("i-3", 1))).toMatchObject({
      balance: 9,
    });
    expect(readFileSync(join(work, "ledger.jsonl"), "utf8").trim().split("\n")).toHaveLength(3);
  });

  test("handlers example - served by a node agent: ctx carries the instruction, run and node ids the coordinator sees", async () => {
    const f = await startFleet();
    try {
      const handlers = await loadHandlers(example);
      expect(Object.keys(handlers).sort()).toEqual(["crunch", "deposit"]);
      const agent = await f.node("bank-1", handlers);
      const fleet = await f.fleet();
      const run = await fleet.createRun();
      const cfg = run.configuration(await fleet.nodes());
      const b = await cfg.broadcast("deposit", { account: "zed", amount: 7 }, { ttlMs: 10_000 });
      const out = (await b.done).get(agent.nodeId!);
      expect(out).toMatchObject({
        ok: true,
        name: "bank-1",
        value: {
          balance: 7,
          instructionId: b.instructions.get(agent.nodeId!),
          runId: run.id,
          nodeId: agent.nodeId,
          attempts: 1,
          replayed: false,
        },
      });
    } finally {
      await f.close();
    }
  }, 30_000);

  test("handlers example - crunch stops at its next step once ctx.signal aborts", async () => {
    const h = await load();
    const ac = new AbortController();
    const c = { ...ctx("i-9", 1), method: "crunch", signal: ac.signal };
    const t0 = Date.now();
    const running = Promise.resolve(h.crunch!({ steps: 10_000 }, c)).catch((e: unknown) => e);
    setTimeout(() => ac.abort(new Error("call cancelled")), 50);
    expect(String(await running)).toContain("call cancelled");
    // 10,000 steps of 10 ms would take 100 s.
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(await h.crunch!({ steps: 2 }, ctx("i-10", 1))).toEqual({ steps: 2 });
  });

  test("handlers example - docs/handlers.md shows examples/handlers.mjs verbatim", () => {
    const doc = readFileSync(join(root, "docs/handlers.md"), "utf8");
    expect(doc).toContain(readFileSync(example, "utf8").trim());
  });
});
