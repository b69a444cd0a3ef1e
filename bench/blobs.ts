// bench:blobs — large messages through the hub, against a plain HTTP file server in the same run.
//  1. fan-out: one BLOB_MIB blob to NODES nodes (each fetches it into its own cache, verified), on file:// and on
//     S3 (s3rver): wall time from the call until every reply is back, against NODES concurrent clients downloading
//     the same file from a plain node:http static server (each hashing while writing its own file). Also: the
//     upload time, the hub's RSS growth, and the bytes the object store holds afterwards (1× the blob).
//  2. resume: a coordinator's download cut by a TCP proxy at 50 %, resumed; the bytes sent twice.
//  3. a REPLY_MIB reply from one node (returned as a file blob), read by a coordinator in lazy mode: the RSS growth
//     of node process, hub process and coordinator process.
// The hub runs as `fleetlink serve` (its own OS process), the nodes in one worker process; SQLite store.
// Cancellation latency has its own benchmark: npm run bench:cancel.
//
// Environment: BLOB_MIB (default 256), NODES (default 20), REPLY_MIB (default 1024), BENCH_BLOB_S3 (default 1).
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import type { FleetBlob } from "../src/blob/handle.ts";
import { Fleet } from "../src/coordinator/fleet.ts";
import { startS3rver } from "../test/helpers/s3rver.ts";
import {
  ask,
  ENROLL_TOKEN,
  exited,
  forkWorker,
  hardLimit,
  printTable,
  round,
  rssKb,
  startHub,
  TOKEN,
} from "./fleet-worker.ts";

const MIB = 1024 * 1024;
const BLOB_MIB = Number(process.env.BLOB_MIB ?? 256);
const NODES = Number(process.env.NODES ?? 20);
const REPLY_MIB = Number(process.env.REPLY_MIB ?? 1024);
const WITH_S3 = process.env.BENCH_BLOB_S3 !== "0";
hardLimit(20 * 60_000);

console.log(
  `bench:blobs — ${BLOB_MIB} MiB blob to ${NODES} nodes (file://${WITH_S3 ? " and S3 via s3rver" : ""}), ` +
    `a download cut at 50 %, a ${REPLY_MIB} MiB reply; hub = fleetlink serve (SQLite), nodes in one worker process`,
);

const root = mkdtempSync(join(tmpdir(), "fleetlink-bench-blobs-"));
process.once("exit", () => rmSync(root, { recursive: true, force: true }));

/** A file of `mib` MiB of random bytes (random per MiB block, so nothing dedups or compresses). */
const randomFile = (path: string, mib: number): string => {
  const fd = openSync(path, "w");
  const hash = createHash("sha256");
  for (let i = 0; i < mib; i++) {
    const b = randomBytes(MIB);
    hash.update(b);
    writeSync(fd, b);
  }
  closeSync(fd);
  return hash.digest("hex");
};

const dirBytes = (dir: string): number => {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) n += statSync(join(e.parentPath, e.name)).size;
  return n;
};

/** Samples a process's RSS every 50 ms; `peakGrowthMiB` is the peak minus the first sample. */
const rssProbe = (read: () => number) => {
  const first = read();
  let peak = first;
  const t = setInterval(() => {
    peak = Math.max(peak, read());
  }, 50);
  return {
    stop: () => {
      clearInterval(t);
      peak = Math.max(peak, read());
      return round((peak - first) / 1024, 1);
    },
  };
};
const selfKb = () => process.memoryUsage.rss() / 1024;

/** A plain static file server (the baseline) as its own process. */
const startStatic = async (file: string) => {
  const { spawn } = await import("node:child_process");
  const code = `
    const http = require("node:http"), fs = require("node:fs");
    const file = process.argv[1], size = fs.statSync(file).size;
    const s = http.createServer((req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
      fs.createReadStream(file).pipe(res);
    });
    s.listen(0, "127.0.0.1", () => console.log("port " + s.address().port));`;
  const child = spawn(process.execPath, ["-e", code, file], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((res) =>
    child.stdout!.on("data", (d) => {
      const m = /port (\d+)/.exec(String(d));
      if (m) res(Number(m[1]));
    }),
  );
  return {
    url: `http://127.0.0.1:${port}/model`,
    stop: async () => {
      child.kill();
      await exited(child);
    },
  };
};

/** A TCP proxy that cuts the first connection whose hub → client bytes pass `cutAt`; counts those bytes. */
const cuttingProxy = async (target: number, cutAt: number) => {
  let down = 0;
  let cut = false;
  const server = net.createServer((client) => {
    const up = net.connect(target, "127.0.0.1");
    let mine = 0;
    client.on("error", () => up.destroy());
    up.on("error", () => client.destroy());
    client.pipe(up);
    up.on("data", (d: Buffer) => {
      down += d.length;
      mine += d.length;
      if (!cut && mine > cutAt) {
        cut = true;
        client.resetAndDestroy();
        up.destroy();
        return;
      }
      // Backpressure, so that what the hub sent is what the client could take (not what a proxy buffered).
      if (!client.write(d)) {
        up.pause();
        client.once("drain", () => up.resume());
      }
    });
    up.on("end", () => client.end());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    bytes: () => down,
    wasCut: () => cut,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
};

const modelPath = join(root, "model.bin");
const modelSha = randomFile(modelPath, BLOB_MIB);
const fanout: Record<string, string | number>[] = [];
let resumeRow: Record<string, string | number> | undefined;
let replyRow: Record<string, string | number> | undefined;
const inlineRows: Record<string, string | number>[] = [];
const INLINE_SIZES_KIB = [16, 64, 256, 1024, 2048];
const INLINE_CALLS = 20;

const storages: {
  name: string;
  url: (dir: string) => string;
  s3?: Awaited<ReturnType<typeof startS3rver>>;
}[] = [{ name: "file://", url: (dir) => `file://${join(dir, "blobs")}` }];
if (WITH_S3) {
  const s3 = await startS3rver("bench-blobs");
  process.env.AWS_ENDPOINT_URL = s3.endpoint;
  process.env.AWS_ACCESS_KEY_ID = s3.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = s3.secretAccessKey;
  process.env.AWS_REGION = s3.region;
  storages.push({ name: "S3 (s3rver)", url: () => `s3://${s3.bucket}/blobs`, s3 });
}

for (const st of storages) {
  const dir = join(root, st.name.startsWith("file") ? "file" : "s3");
  mkdirSync(dir, { recursive: true });
  const hub = await startHub(`sqlite:${join(dir, "hub.db")}`, { extra: ["--blobs", st.url(dir)] });
  const worker = forkWorker(join(import.meta.dirname, "blobs-worker.ts"));
  const ids = await ask<string[]>(worker, "ids", {
    start: { hub: hub.url, count: NODES, dir: join(dir, "nodes"), enrollToken: ENROLL_TOKEN },
  });
  const fleet = await Fleet.connect({
    hub: hub.url,
    token: TOKEN,
    blobs: "lazy",
    blobCacheDir: join(dir, "coordinator"),
  });
  const run = await fleet.createRun();
  const upRss = rssProbe(() => rssKb(hub.pid));
  let t = performance.now();
  const model = await run.blobs!.put({ path: modelPath });
  const uploadMs = performance.now() - t;
  const upGrowth = upRss.stop();
  const hubRss = rssProbe(() => rssKb(hub.pid));
  if (model.sha256 !== modelSha) throw new Error("uploaded blob has the wrong sha256");
  t = performance.now();
  const res = await run.call(ids, "fetch", { model }, { quorum: "all", timeoutMs: 600_000 });
  const callMs = performance.now() - t;
  const growth = hubRss.stop();
  const ok = [...res.replies.values()].filter((v) => (v as { sha256: string }).sha256 === modelSha).length;
  if (ok !== NODES) throw new Error(`only ${ok} of ${NODES} nodes got the blob: ${[...res.errors.values()]}`);
  let stored: number;
  if (st.s3) {
    const s3 = new S3Client({
      endpoint: st.s3.endpoint,
      region: st.s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: st.s3.accessKeyId, secretAccessKey: st.s3.secretAccessKey },
    });
    const list = await s3.send(new ListObjectsV2Command({ Bucket: st.s3.bucket, Prefix: "blobs/" }));
    stored = (list.Contents ?? []).reduce((a, o) => a + (o.Size ?? 0), 0);
    s3.destroy();
  } else stored = dirBytes(join(dir, "blobs"));

  // The baseline, right after, on the same machine: the same file to as many clients from a static server.
  const plain = await startStatic(modelPath);
  const base = await ask<{ ms: number; bytes: number }>(
    worker,
    "staticDone",
    { static: { url: plain.url, count: NODES, dir: join(dir, "static") } },
    600_000,
  );
  await plain.stop();
  rmSync(join(dir, "static"), { recursive: true, force: true });
  const mbs = (ms: number) => round((BLOB_MIB * NODES) / (ms / 1000), 0);
  fanout.push({
    storage: st.name,
    "upload s": round(uploadMs / 1000, 2),
    "fleetlink s": round(callMs / 1000, 2),
    "fleetlink MiB/s": mbs(callMs),
    "static server s": round(base.ms / 1000, 2),
    "static MiB/s": mbs(base.ms),
    "speed ÷ static": round(base.ms / callMs, 2),
    "hub RSS growth MiB: upload": upGrowth,
    "fan-out": growth,
    "object store bytes ÷ blob": round(stored / (BLOB_MIB * MIB), 3),
  });

  if (!st.s3) {
    // 2. A download cut at 50 %, resumed (a coordinator with an empty cache, through a cutting proxy).
    const port = Number(new URL(hub.url).port);
    const proxy = await cuttingProxy(port, (BLOB_MIB * MIB) / 2);
    const other = await Fleet.connect({
      hub: proxy.url,
      token: TOKEN,
      blobs: "lazy",
      blobCacheDir: join(dir, "resume"),
    });
    const again = await other.run(run.id);
    const h = createHash("sha256");
    t = performance.now();
    for await (const c of again.blobs!.get(model).stream()) h.update(c as Buffer);
    const resumeMs = performance.now() - t;
    if (h.digest("hex") !== modelSha) throw new Error("resumed download has the wrong bytes");
    const resent = proxy.bytes() - BLOB_MIB * MIB;
    resumeRow = {
      blob: `${BLOB_MIB} MiB`,
      "cut at": "50 %",
      cut: proxy.wasCut() ? "yes" : "NO",
      "bytes through the proxy": proxy.bytes(),
      "re-sent bytes": resent,
      "re-sent % of blob": round((100 * resent) / (BLOB_MIB * MIB), 3),
      "time s": round(resumeMs / 1000, 2),
    };
    await other.close();
    await proxy.close();

    // 3. A REPLY_MIB reply from one node, read lazily by the coordinator.
    const bigPath = join(root, "reply.bin");
    const bigSha = randomFile(bigPath, REPLY_MIB);
    // Free the disk the fan-out used (NODES copies of the blob), keeping each node's cache directory.
    for (const e of readdirSync(join(dir, "nodes"), { withFileTypes: true, recursive: true }))
      if (e.isFile()) rmSync(join(e.parentPath, e.name), { force: true });
    const probes = {
      node: rssProbe(() => rssKb(worker.pid!)),
      hub: rssProbe(() => rssKb(hub.pid)),
      coordinator: rssProbe(selfKb),
    };
    t = performance.now();
    const r = await run.call([ids[0]!], "big", { path: bigPath }, { quorum: "all", timeoutMs: 600_000 });
    const out = (r.replies.get(ids[0]!) as { out: FleetBlob } | undefined)?.out;
    if (!out) throw new Error(`no reply: ${[...r.errors.values()]}`);
    const h2 = createHash("sha256");
    for await (const c of out.stream()) h2.update(c as Buffer);
    const replyMs = performance.now() - t;
    if (h2.digest("hex") !== bigSha) throw new Error("reply blob has the wrong bytes");
    replyRow = {
      reply: `${REPLY_MIB} MiB`,
      "time s": round(replyMs / 1000, 2),
      "MiB/s": round(REPLY_MIB / (replyMs / 1000), 0),
      "node RSS growth MiB": probes.node.stop(),
      "hub RSS growth MiB": probes.hub.stop(),
      "coordinator RSS growth MiB": probes.coordinator.stop(),
    };
    rmSync(bigPath, { force: true });

    // 4. Where the inline threshold belongs: one node, sequential calls with fresh random bytes each time, sent
    // inline (base64 in the JSON payload) or as a blob (upload, reference, download, verify).
    const p50 = async (f: Fleet, kib: number) => {
      const r = await f.createRun();
      const ms: number[] = [];
      for (let i = 0; i < INLINE_CALLS; i++) {
        const data = randomBytes(kib * 1024);
        const t0 = performance.now();
        const res = await r.call([ids[0]!], "len", { data }, { quorum: "all", timeoutMs: 60_000 });
        ms.push(performance.now() - t0);
        if (res.replies.get(ids[0]!) !== data.byteLength) throw new Error("wrong length");
      }
      await r.close();
      return ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)]!;
    };
    const inline = await Fleet.connect({ hub: hub.url, token: TOKEN, inlineBytes: 4 * MIB });
    const asBlob = await Fleet.connect({
      hub: hub.url,
      token: TOKEN,
      inlineBytes: 0,
      blobCacheDir: join(dir, "c2"),
    });
    for (const kib of INLINE_SIZES_KIB) {
      const a = await p50(inline, kib);
      const b = await p50(asBlob, kib);
      inlineRows.push({
        bytes: kib >= 1024 ? `${kib / 1024} MiB` : `${kib} KiB`,
        "inline (base64) p50 ms": round(a, 2),
        "blob p50 ms": round(b, 2),
        "blob ÷ inline": round(b / a, 2),
      });
    }
    await inline.close();
    await asBlob.close();
  }

  await fleet.close();
  await ask(worker, "stopped", { stop: true }, 60_000).catch(() => worker.kill("SIGKILL"));
  await exited(worker);
  await hub.stop();
  rmSync(dir, { recursive: true, force: true });
}
for (const st of storages) await st.s3?.stop();

console.log(
  `\n1. ${BLOB_MIB} MiB to ${NODES} nodes, until every reply is back (target: speed ÷ static ≥ 0.7)`,
);
printTable(fanout);
console.log(`\n2. a download cut at 50 % and resumed (target: re-sent < 5 %)`);
if (resumeRow) printTable([resumeRow]);
console.log(`\n3. a ${REPLY_MIB} MiB reply from one node, read lazily (target: each growth ≤ 64 MiB)`);
if (replyRow) printTable([replyRow]);
console.log(
  `\n4. bytes inline (base64 in the payload) or as a blob, one node, p50 of ${INLINE_CALLS} sequential calls`,
);
printTable(inlineRows);
console.log(JSON.stringify({ fanout, resume: resumeRow, reply: replyRow, inline: inlineRows }));
process.exit(0);
