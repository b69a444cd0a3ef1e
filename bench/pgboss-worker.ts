// The pg-boss baseline of bench:throughput. Run as a child process, this file is the consumer: LOOPS loops each
// fetch up to `batch` jobs at once and complete them in one call. Imported, it gives the parent the producer.
import { PgBoss } from "pg-boss";

export interface ConsumerSpec {
  url: string;
  schema: string;
  queue: string;
  batch: number;
  loops: number;
}

/** A pg-boss instance with its background work (supervision, cron) off: only the queue operations run. */
export const openBoss = async (url: string, schema: string, max = 10): Promise<PgBoss> => {
  const boss = new PgBoss({ connectionString: url, schema, max, supervise: false, schedule: false });
  boss.on("error", (e) => console.error(`pg-boss: ${String(e)}`));
  await boss.start();
  return boss;
};

const runConsumer = () => {
  let completed = 0;
  let stopping = false;
  let loops: Promise<void>[] = [];
  let boss: PgBoss | undefined;
  process.on("message", (m: { start?: ConsumerSpec; count?: boolean; stop?: boolean }) => {
    void (async () => {
      try {
        if (m.start) {
          const s = m.start;
          boss = await openBoss(s.url, s.schema);
          const b = boss;
          loops = Array.from({ length: s.loops }, async () => {
            while (!stopping) {
              const jobs = await b.fetch(s.queue, { batchSize: s.batch });
              if (jobs.length === 0) {
                await new Promise((r) => setTimeout(r, 2));
                continue;
              }
              await b.complete(
                s.queue,
                jobs.map((j) => j.id),
              );
              completed += jobs.length;
            }
          });
          process.send!({ ready: true });
        } else if (m.count) process.send!({ completed });
        else if (m.stop) {
          stopping = true;
          await Promise.all(loops);
          await boss?.stop({ graceful: false, close: true });
          process.send!({ stopped: completed }, () => process.exit(0));
        }
      } catch (e) {
        process.send!({ error: String((e as Error).stack ?? e) }, () => process.exit(1));
      }
    })();
  });
};

if (import.meta.main) runConsumer();
