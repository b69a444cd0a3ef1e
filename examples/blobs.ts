// Bytes in, bytes out, and a handler that stops when its call does. Run from a checkout: npx node examples/blobs.ts
import { createHash } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHub, Fleet, IncompleteCallError, NodeAgent, openStore } from "../src/index.ts";

const dir = mkdtempSync(join(tmpdir(), "fleetlink-"));
const store = await openStore(`sqlite:${join(dir, "fleet.db")}`);
// Blob bytes live in object storage (file:// here, s3:// for real); the store keeps only their references.
const hub = createHub({
  store,
  token: "admin-secret",
  enrollToken: "enroll-secret",
  blobStore: `file://${dir}/blobs`,
});
const url = await hub.listen({ port: 0 });

const stopped: string[] = [];
const agent = new NodeAgent({
  hubs: [url],
  name: "trainer",
  enrollToken: "enroll-secret",
  handlers: {
    // Bytes arrive as a Buffer, whatever their size; bytes returned go back the same way.
    train: (p) => {
      const { weights } = p as { weights: Buffer };
      const update = Buffer.from(weights.map((b) => b ^ 0xff));
      return { update, sha256: createHash("sha256").update(weights).digest("hex") };
    },
    // A long handler that stops when its call no longer needs it (withdrawn, cancelled, deadline, TTL).
    slow: (_p, ctx) =>
      new Promise((resolve) => {
        const t = setTimeout(() => resolve("done"), 60_000);
        ctx.signal.addEventListener("abort", () => {
          clearTimeout(t);
          stopped.push((ctx.signal.reason as { code?: string }).code ?? "aborted");
          resolve("too late: dropped, never sent");
        });
      }),
  },
});
await agent.start();

const fleet = await Fleet.connect({ hub: url, token: "admin-secret" });
const run = await fleet.createRun();
const nodes = [agent.nodeId!];

// 8 MiB of model weights: over the inline threshold (256 KiB), so they are uploaded once as a blob.
const weights = new Uint8Array(8 * 1024 * 1024).map((_, i) => i % 251);
const { replies } = await run.call(nodes, "train", { weights }, { quorum: "all", timeoutMs: 30_000 });
const { update, sha256 } = replies.get(agent.nodeId!) as { update: Buffer; sha256: string };
console.log(
  "train → node hashed",
  sha256 === createHash("sha256").update(weights).digest("hex") ? "the same bytes" : "OTHER bytes",
);
console.log("train → update of", update.byteLength, "bytes, first byte", update[0]);

try {
  await run.call(nodes, "slow", null, { quorum: "all", timeoutMs: 500 });
} catch (e) {
  if (e instanceof IncompleteCallError) console.log("slow → call ended:", e.code);
}
await new Promise((r) => setTimeout(r, 500));
console.log("slow → handler stopped:", stopped.join(", "));

await fleet.close();
await agent.stop();
await hub.close();
await store.close();
