// The anchor's regression: sequential quorum calls that flakily ended "incomplete" because a stale stream
// requeued or dropped replies. Real hub and node processes; zero spurious failures allowed.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { enrollTokenFor, type Proc, startHubProc, startNodeProc } from "../helpers/procs.ts";

const TOKEN = "seq-token";
const ROUNDS = 500;

const cluster = (size: number, slowMs: number) => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-seq-"));
  const procs: Proc[] = [];
  let fleet: Fleet;
  let nodeIds: string[] = [];
  return {
    async start() {
      const hub = await startHubProc(`sqlite:${join(dir, "fleet.db")}`, TOKEN);
      procs.push(hub);
      const nodes = await Promise.all(
        Array.from({ length: size }, (_, i) =>
          startNodeProc(
            [hub.value],
            `n${i}`,
            enrollTokenFor(TOKEN),
            join(dir, `n${i}.json`),
            i === 0 && slowMs ? { SLOW_MS: String(slowMs) } : {},
          ),
        ),
      );
      procs.push(...nodes);
      nodeIds = nodes.map((n) => n.value);
      fleet = await Fleet.connect({ hub: hub.value, token: TOKEN });
      return { fleet, nodeIds };
    },
    async stop() {
      await fleet?.close();
      await Promise.all(procs.map((p) => p.kill()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
};

for (const size of [3, 5]) {
  for (const slowMs of [0, 10]) {
    describe(`sequential quorum calls: ${size} node processes${slowMs ? `, one answering ${slowMs} ms late` : ""}`, () => {
      const c = cluster(size, slowMs);
      let fleet: Fleet;
      let nodeIds: string[];
      beforeAll(async () => {
        ({ fleet, nodeIds } = await c.start());
      }, 60_000);
      afterAll(() => c.stop());

      for (const first of ["majority", "first"] as const) {
        test(`call - ${ROUNDS} × (${first} then all): zero spurious failures, every reply for its own call`, async () => {
          const run = await fleet.createRun();
          const cfg = run.configuration(nodeIds);
          const rounds = ROUNDS;
          for (let i = 0; i < rounds; i++) {
            const a = await cfg.call("echo", { i, q: first }, { quorum: first, timeoutMs: 10_000 });
            expect(a.errors.size).toBe(0);
            for (const v of a.replies.values()) expect(v).toEqual({ i, q: first });
            const b = await cfg.call("echo", { i, q: "all" }, { quorum: "all", timeoutMs: 10_000 });
            expect(b.replies.size).toBe(size);
            for (const v of b.replies.values()) expect(v).toEqual({ i, q: "all" });
          }
        }, 240_000);
      }
    });
  }
}
