import { type ChildProcess, fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { describe, expect, test } from "vitest";
import { openStore } from "../../src/store/open.ts";
import { describePg, dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";

const WORKER = join(import.meta.dirname, "blob-race-worker.ts");
const PUSHERS = 3;
const COLLECTORS = 2;
const DURATION_MS = 4000;

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

type PushStats = { pushed: number; refused: number; violations: string[] };

const blobRaceSuite = (
  name: string,
  make: () => { url: string; count: (table: string) => Promise<number>; cleanup: () => Promise<void> },
) => {
  describe(`blob race: ${name}`, () => {
    test(`collect - ${COLLECTORS} collectors with no grace racing ${PUSHERS} pushers: no live reference loses its blob, nothing is left after`, async () => {
      const { url, count, cleanup } = make();
      const store = await openStore(url);
      try {
        const run = await store.createRun();
        const n = await store.registerNode({ name: "racer", heartbeatIntervalMs: 600_000 });
        await store.heartbeat(n.id);
        const procs = await Promise.all(
          Array.from({ length: PUSHERS + COLLECTORS }, () => spawnReplica(url)),
        );
        let answers: Record<string, unknown>[];
        try {
          answers = await Promise.all(
            procs.map((p, k) =>
              p.ask(
                k < PUSHERS
                  ? { cmd: "push", runId: run.id, nodeId: n.id, seed: `blob-${k}`, durationMs: DURATION_MS }
                  : { cmd: "collect", durationMs: DURATION_MS },
              ),
            ),
          );
        } finally {
          for (const p of procs) p.child.kill();
        }
        const pushes = answers.slice(0, PUSHERS) as unknown as PushStats[];
        expect(pushes.flatMap((s) => s.violations)).toEqual([]);
        // The race was real: pushes went through, and collectors deleted blobs under the pushers' feet.
        expect(pushes.reduce((a, s) => a + s.pushed, 0)).toBeGreaterThan(0);
        const deleted = answers.slice(PUSHERS).reduce((a, s) => a + (s.deleted as number), 0);
        expect(deleted).toBeGreaterThan(0);
        // Every instruction ended: one more collect after the grace (0) leaves no blob and no reference.
        await store.collectBlobs({ graceMs: 0, uploadIdleMs: 3_600_000 });
        expect(await store.blobStats()).toEqual({ blobs: 0, bytes: 0, uploads: 0 });
        expect(await count("blob_refs")).toBe(0);
        expect(await count("blobs")).toBe(0);
      } finally {
        await store.close();
        await cleanup();
      }
    }, 60_000);
  });
};

blobRaceSuite("sqlite, processes on one file", () => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-blob-race-"));
  const file = join(dir, "fleet.db");
  return {
    url: `sqlite:${file}`,
    count: async (table) => {
      const db = new DatabaseSync(file);
      try {
        return Number((db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n);
      } finally {
        db.close();
      }
    },
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

describePg("postgres", () => {
  blobRaceSuite("postgres", () => {
    const { url, schema } = pgSchemaUrl("blobrace");
    return {
      url,
      count: async (table) => {
        const pg = (await import("pg")).default;
        const c = new pg.Client({ connectionString: PG_URL });
        await c.connect();
        try {
          return Number((await c.query(`SELECT count(*) AS n FROM "${schema}".${table}`)).rows[0].n);
        } finally {
          await c.end();
        }
      },
      cleanup: () => dropSchema(schema),
    };
  });
});
