// The far side of bench:blobs, as its own OS process (so its memory is measured apart from the hub's and the
// coordinator's). Asked over IPC, it either starts NodeAgents whose handlers take blobs lazily, or downloads one
// file from a plain HTTP server with N concurrent clients doing the same work as a node (hash while writing to
// its own file), as the baseline.
import { createHash } from "node:crypto";
import { createWriteStream, mkdirSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { FleetBlob } from "../src/blob/handle.ts";
import { NodeAgent } from "../src/node/agent.ts";

interface Start {
  hub: string;
  count: number;
  dir: string;
  enrollToken: string;
}

const agents: NodeAgent[] = [];

const startNodes = async (o: Start): Promise<string[]> => {
  for (let k = 0; k < o.count; k++) {
    const cacheDir = join(o.dir, `node-${k}`);
    mkdirSync(cacheDir, { recursive: true });
    const a = new NodeAgent({
      hubs: [o.hub],
      name: `blob-${k}`,
      enrollToken: o.enrollToken,
      blobs: "lazy",
      blobCacheDir: cacheDir,
      blobCacheBytes: 8 * 1024 ** 3,
      handlers: {
        // Fetches the model into the node's cache (verified against its sha256) and reads one byte of it.
        fetch: async (p) => {
          const model = (p as { model: FleetBlob }).model;
          for await (const _ of model.stream({ start: 0, end: 0 }));
          return { sha256: model.sha256 };
        },
        // How many bytes arrived (inline or through a blob: the handler cannot tell).
        len: async (p) => {
          const data = (p as { data: FleetBlob | Buffer }).data;
          return data instanceof Uint8Array ? data.byteLength : (await data.bytes()).byteLength;
        },
        // Returns a file as a blob without holding it in memory.
        big: async (p, ctx) => ({ out: await ctx.blobs!.put({ path: (p as { path: string }).path }) }),
      },
    });
    await a.start();
    agents.push(a);
  }
  return agents.map((a) => a.nodeId!);
};

/** One plain download: hashed while written to its own file, like a node's cache. */
const download = (url: string, file: string): Promise<number> =>
  new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        const hash = createHash("sha256");
        let n = 0;
        res.on("data", (c: Buffer) => {
          hash.update(c);
          n += c.length;
        });
        pipeline(res, createWriteStream(file))
          .then(() => {
            hash.digest("hex");
            resolve(n);
          })
          .catch(reject);
      })
      .on("error", reject);
  });

process.on("message", async (m: Record<string, unknown>) => {
  try {
    if (m.start) process.send!({ ids: await startNodes(m.start as Start) });
    else if (m.static) {
      const { url, count, dir } = m.static as { url: string; count: number; dir: string };
      mkdirSync(dir, { recursive: true });
      const t = performance.now();
      const sizes = await Promise.all(
        Array.from({ length: count }, (_, k) => download(url, join(dir, `client-${k}`))),
      );
      process.send!({ staticDone: { ms: performance.now() - t, bytes: sizes.reduce((a, b) => a + b, 0) } });
    } else if (m.stop) {
      await Promise.all(agents.map((a) => a.stop()));
      process.send!({ stopped: true });
      process.exit(0);
    }
  } catch (e) {
    process.send!({ error: String((e as Error).stack ?? e) });
  }
});
