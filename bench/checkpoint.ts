// Fleet checkpoint throughput: 4 hosts × 64 MiB pushed and pulled through the hub to a real S3-compatible
// server (s3rver over HTTP), against raw PutObject/GetObject of the same bytes on the same server.
// Run: npm run bench:checkpoint
import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { nodeCheckpoints } from "../src/checkpoint/node-side.ts";
import { readAll } from "../src/checkpoint/object-store.ts";
import { openObjectStore } from "../src/checkpoint/open.ts";
import { Fleet } from "../src/coordinator/fleet.ts";
import { createHub } from "../src/hub/server.ts";
import { NodeAgent } from "../src/node/agent.ts";
import { openStore } from "../src/store/open.ts";
import { startS3rver } from "../test/helpers/s3rver.ts";

const HOSTS = Number(process.env.HOSTS ?? 4);
const MIB = Number(process.env.MIB ?? 64);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const bytes = MIB * 1024 * 1024;
const total = (HOSTS * bytes) / 1048576;

console.log(
  `bench:checkpoint — ${HOSTS} hosts × ${MIB} MiB, ${ROUNDS} rounds each, s3rver on 127.0.0.1, node agents in this process`,
);
const s3 = await startS3rver("bench");
const opts = {
  endpoint: s3.endpoint,
  region: s3.region,
  forcePathStyle: true,
  accessKeyId: s3.accessKeyId,
  secretAccessKey: s3.secretAccessKey,
};
const store = await openStore("memory:");
const objects = () => openObjectStore(`s3://${s3.bucket}/fleet`, opts);
const hub = createHub({ store, token: "t", enrollToken: "e", checkpointStore: objects(), checkpointKeep: 2 });
const url = await hub.listen();
const states: Uint8Array[] = Array.from({ length: HOSTS }, () => new Uint8Array(randomBytes(bytes)));
const agents: NodeAgent[] = [];
for (let k = 0; k < HOSTS; k++) {
  const a = new NodeAgent({
    hubs: [url],
    name: `h${k}`,
    enrollToken: "e",
    handlers: {},
    plugins: [
      nodeCheckpoints({
        state: {
          snapshot: () => states[k]!,
          restore: async (r: Readable) => {
            states[k] = await readAll(r);
          },
        },
        objects: objects(),
      }),
    ],
  });
  await a.start();
  agents.push(a);
}
const fleet = await Fleet.connect({ hub: url, token: "t" });
const run = await fleet.createRun();
await fleet.checkpoints.assign(
  run,
  agents.map((a) => a.nodeId!),
);

const time = async (f: () => Promise<unknown>) => {
  const t = performance.now();
  await f();
  return (performance.now() - t) / 1000;
};
const best = (xs: number[]) => Math.min(...xs);

const raw = new S3Client({
  ...opts,
  credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
});
const rawPut: number[] = [];
const rawGet: number[] = [];
const push: number[] = [];
const pull: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  rawPut.push(
    await time(() =>
      Promise.all(
        states.map((b, k) => raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `raw/${k}`, Body: b }))),
      ),
    ),
  );
  rawGet.push(
    await time(() =>
      Promise.all(
        states.map(async (_, k) => {
          const o = await raw.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `raw/${k}` }));
          await readAll(o.Body as Readable);
        }),
      ),
    ),
  );
  push.push(
    await time(async () => {
      const s = await fleet.checkpoints.push(run);
      if (s.status !== "ok") throw new Error(`push failed: ${JSON.stringify(s.error)}`);
    }),
  );
  pull.push(
    await time(async () => {
      const s = await fleet.checkpoints.pull(run, "latest");
      if (s.status !== "ok") throw new Error(`pull failed: ${JSON.stringify(s.error)}`);
    }),
  );
}
const rows = [
  { op: "push", fleetMiBs: total / best(push), rawMiBs: total / best(rawPut) },
  { op: "pull", fleetMiBs: total / best(pull), rawMiBs: total / best(rawGet) },
];
console.log("\n| operation | fleet checkpoint (MiB/s) | raw S3 (MiB/s) | ratio |");
console.log("| --- | ---: | ---: | ---: |");
for (const r of rows)
  console.log(
    `| ${r.op} | ${r.fleetMiBs.toFixed(1)} | ${r.rawMiBs.toFixed(1)} | ${(r.fleetMiBs / r.rawMiBs).toFixed(2)} |`,
  );
for (const r of rows)
  console.log(
    JSON.stringify({
      hosts: HOSTS,
      mibPerHost: MIB,
      ...r,
      ratio: Number((r.fleetMiBs / r.rawMiBs).toFixed(3)),
    }),
  );
await fleet.close();
for (const a of agents) await a.stop();
await hub.close();
await s3.stop();
process.exit(0);
