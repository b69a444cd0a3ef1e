// Blob series of one hub replica, in the hub's registry (http/metrics.ts). Counters are this replica's;
// the gauges are store-wide, read from blobStats on scrape.
import { Counter, Gauge, type Registry } from "prom-client";
import type { Store } from "../../store/store.ts";
import type { BlobObserver } from "./uploads.ts";

export const createBlobMetrics = (registry: Registry, store: Store): BlobObserver => {
  const registers = [registry];
  const bytes = new Counter({
    name: "fleetlink_blob_bytes_total",
    help: "Blob bytes this replica received in uploads or sent in downloads, by direction (up/down).",
    labelNames: ["direction"] as const,
    registers,
  });
  const completed = new Counter({
    name: "fleetlink_blob_uploads_completed_total",
    help: "Uploads this replica verified and made visible.",
    registers,
  });
  const refused = new Counter({
    name: "fleetlink_blob_uploads_refused_total",
    help: "Uploads or upload requests refused, by reason (the error code).",
    labelNames: ["reason"] as const,
    registers,
  });
  const deleted = new Counter({
    name: "fleetlink_blobs_deleted_total",
    help: "Blobs this replica's collector deleted (no live reference, grace passed).",
    registers,
  });
  const stats = async () => store.blobStats().catch(() => null);
  new Gauge({
    name: "fleetlink_blobs",
    help: "Blobs visible in the store (store-wide).",
    registers,
    async collect() {
      const s = await stats();
      if (s) this.set(s.blobs);
    },
  });
  new Gauge({
    name: "fleetlink_blob_store_bytes",
    help: "Bytes of the blobs visible in the store (store-wide).",
    registers,
    async collect() {
      const s = await stats();
      if (s) this.set(s.bytes);
    },
  });
  return {
    uploadedBytes: (n) => bytes.inc({ direction: "up" }, n),
    downloadedBytes: (n) => bytes.inc({ direction: "down" }, n),
    uploadCompleted: () => completed.inc(),
    uploadRefused: (reason) => refused.inc({ reason }),
    blobsDeleted: (n) => deleted.inc(n),
  };
};
