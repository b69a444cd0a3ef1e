import { type ChildProcess, fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";
import { describePg, dropSchema, pgSchemaUrl } from "../helpers/postgres.ts";

const WORKER = join(import.meta.dirname, "race-worker.ts");
const NODES = 50;
const INSTRUCTIONS = 20_000;
const REPLICAS = 4;

type Claimed = { id: string; attempts: number };

/** A replica process; `ask` sends one command and waits for its one answer. */
const spawnReplica = async (url: string) => {
  const child: ChildProcess = fork(WORKER, [url], {
    execArgv: [],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const next = () =>
    new Promise<Record<string, unknown>>((res, rej) => {
      const onExit = (code: number | null, sig: string | null) =>
        rej(new Error(`replica exited ${code ?? sig}`));
      child.once("exit", onExit);
      child.once("message", (m: Record<string, unknown>) => {
        child.off("exit", onExit);
        if (m.error) rej(new Error(`replica: ${m.error}`));
        else res(m);
      });
    });
  await next();
  const ask = (cmd: object) => {
    child.send(cmd);
    return next();
  };
  return { child, ask };
};

const countBy = <T>(xs: T[], key: (x: T) => string) => {
  const m = new Map<string, number>();
  for (const x of xs) m.set(key(x), (m.get(key(x)) ?? 0) + 1);
  return m;
};

const raceSuite = (name: string, makeUrl: () => { url: string; cleanup: () => Promise<void> }) => {
  describe(`race: ${name}, ${REPLICAS} replica processes`, () => {
    let url: string;
    let cleanup: () => Promise<void>;
    let store: Store;
    let nodeIds: string[];

    beforeAll(async () => {
      ({ url, cleanup } = makeUrl());
      store = await openStore(url);
      nodeIds = [];
      for (let i = 0; i < NODES; i++) {
        const n = await store.registerNode({ name: `node-${i}`, heartbeatIntervalMs: 600_000 });
        await store.heartbeat(n.id);
        nodeIds.push(n.id);
      }
    });
    afterAll(async () => {
      await store?.close();
      await cleanup?.();
    });

    const pushSpread = async (runId: string, count: number) => {
      const ids: string[] = [];
      for (let off = 0; off < count; off += 1000) {
        const batch = Array.from({ length: Math.min(1000, count - off) }, (_, k) => ({
          dst: nodeIds[(off + k) % NODES]!,
          method: "work",
          ttlMs: 600_000,
        }));
        ids.push(...(await store.pushInstructions(runId, batch)).map((i) => i.id));
      }
      return ids;
    };

    const claimReplies = async (runId: string) => {
      const replicas = await Promise.all(Array.from({ length: REPLICAS }, () => spawnReplica(url)));
      try {
        const answers = await Promise.all(replicas.map((r) => r.ask({ cmd: "replies", runId })));
        return answers.flatMap((a) => a.replies as { replyTo: string; payload: string }[]);
      } finally {
        for (const r of replicas) r.child.kill();
      }
    };

    test(`claim - ${REPLICAS} replicas racing over ${INSTRUCTIONS} instructions and their replies: each exactly once`, async () => {
      const run = await store.createRun();
      const pushed = await pushSpread(run.id, INSTRUCTIONS);
      const replicas = await Promise.all(Array.from({ length: REPLICAS }, () => spawnReplica(url)));
      let claimed: Claimed[];
      try {
        const answers = await Promise.all(
          replicas.map((r) => r.ask({ cmd: "claim", nodeIds, leaseMs: 600_000 })),
        );
        claimed = answers.flatMap((a) => a.claimed as Claimed[]);
        // Several replicas took part: the race was real, not one process doing all the work. (SQLite's busy
        // handler may starve one process for the whole run, so not every one is required to win rows.)
        expect(answers.filter((a) => (a.claimed as Claimed[]).length > 0).length).toBeGreaterThanOrEqual(2);
      } finally {
        for (const r of replicas) r.child.kill();
      }
      expect(claimed).toHaveLength(INSTRUCTIONS);
      expect(new Set(claimed.map((c) => c.id))).toEqual(new Set(pushed));
      expect(claimed.every((c) => c.attempts === 1)).toBe(true);

      const replies = await claimReplies(run.id);
      expect(replies).toHaveLength(INSTRUCTIONS);
      expect(new Set(replies.map((r) => r.replyTo))).toEqual(new Set(pushed));
      expect(replies.every((r) => r.payload === r.replyTo)).toBe(true);
      const left = await store.claimInstructions({ nodeIds, limit: 1000 });
      expect(left).toEqual([]);
      expect(await store.claimReplies({ runId: run.id })).toEqual([]);
    }, 240_000);

    test("claim - a replica killed holding leases: its instructions are redelivered exactly once more", async () => {
      const run = await store.createRun();
      const pushed = await pushSpread(run.id, 2000);
      const leaseMs = 1500;
      const victim = await spawnReplica(url);
      const { claimed: held } = (await victim.ask({ cmd: "claim-once", nodeIds, limit: 10, leaseMs })) as {
        claimed: Claimed[];
      };
      victim.child.kill("SIGKILL");
      expect(held.length).toBe(500);

      const survivors = await Promise.all(Array.from({ length: REPLICAS - 1 }, () => spawnReplica(url)));
      let claimed: Claimed[];
      try {
        const untilMs = Date.now() + leaseMs + 1000;
        const answers = await Promise.all(
          survivors.map((r) => r.ask({ cmd: "claim", nodeIds, leaseMs: 600_000, untilMs })),
        );
        claimed = answers.flatMap((a) => a.claimed as Claimed[]);
      } finally {
        for (const r of survivors) r.child.kill();
      }
      const times = countBy(claimed, (c) => c.id);
      expect(claimed).toHaveLength(2000);
      expect([...times.values()].every((n) => n === 1)).toBe(true);
      const heldIds = new Set(held.map((h) => h.id));
      for (const c of claimed) expect(c.attempts).toBe(heldIds.has(c.id) ? 2 : 1);

      const replies = await claimReplies(run.id);
      expect(replies).toHaveLength(2000);
      expect(new Set(replies.map((r) => r.replyTo))).toEqual(new Set(pushed));
    }, 120_000);
  });
};

raceSuite("sqlite", () => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-race-"));
  return {
    url: `sqlite:${join(dir, "fleet.db")}`,
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

describePg("postgres", () => {
  raceSuite("postgres", () => {
    const { url, schema } = pgSchemaUrl("race");
    return { url, cleanup: () => dropSchema(schema) };
  });
});
