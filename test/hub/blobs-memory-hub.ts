// A hub with file:// blob storage in a process of its own, for blobs-memory.test.ts: it samples its own RSS
// and reports the peak since the last "reset" line on stdin ("peak" answers it); stdin closed: it exits.
import { createInterface } from "node:readline";
import { createHub } from "../../src/hub/server.ts";
import { openStore } from "../../src/store/open.ts";

const dir = process.argv[2]!;
const store = await openStore(`sqlite:${dir}/fleet.db`);
const hub = createHub({
  store,
  token: "memory-token",
  blobStore: `file://${dir}/objects`,
  metrics: false,
  dashboard: false,
});
const url = await hub.listen();
let peak = 0;
const sample = () => {
  peak = Math.max(peak, process.memoryUsage().rss);
};
setInterval(sample, 10).unref();
process.stdout.write(`${JSON.stringify({ url })}\n`);
const lines = createInterface({ input: process.stdin });
lines.on("line", (l) => {
  if (l === "reset") {
    globalThis.gc?.();
    peak = process.memoryUsage().rss;
    process.stdout.write(`${JSON.stringify({ rss: peak })}\n`);
  } else if (l === "peak") {
    sample();
    process.stdout.write(`${JSON.stringify({ peak })}\n`);
  }
});
lines.on("close", () => {
  void hub.close().then(() => store.close().then(() => process.exit(0)));
});
