// Blob garbage collection, run by every replica on an interval. The store decides what goes (safe when
// replicas race: a blob is deleted from the store before its object, and never while referenced); this
// replica then removes the bytes: objects of deleted blobs, abandoned uploads, and partial files that a
// writer killed mid-write left without an upload row.
import type { Store } from "../../store/store.ts";
import type { BlobUpload } from "../../store/types.ts";
import type { BlobStorage } from "./storage.ts";
import type { BlobObserver } from "./uploads.ts";

export interface BlobCollectorOptions {
  store: Store;
  storage: BlobStorage;
  graceMs: number;
  uploadIdleMs: number;
  intervalMs: number;
  /** Uploads removed by the collector (their running hashes can go). */
  forget?: (uploadIds: string[]) => void;
  observe?: BlobObserver;
  warn?: (msg: string, err: unknown) => void;
  /** A partial file younger than this is never swept: its upload row may be moments old. (Default: 60000) */
  orphanMinAgeMs?: number;
}

export class BlobCollector {
  private readonly o: BlobCollectorOptions;
  private readonly timer: ReturnType<typeof setInterval>;
  private running: Promise<void> | null = null;
  /** Objects of blobs the store deleted, and abandoned uploads, not yet removed from storage. */
  private readonly pendingDeletes = new Set<string>();
  private readonly pendingAborts = new Map<string, BlobUpload>();
  private closed = false;

  constructor(o: BlobCollectorOptions) {
    this.o = o;
    this.timer = setInterval(() => void this.collect(), o.intervalMs);
    // GC never keeps a process alive.
    this.timer.unref();
  }

  /** One round (a round already running is joined, not doubled). */
  collect(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.running ??= this.round()
      .catch((e) => this.o.warn?.("blob collection failed", e))
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  private async removePending(): Promise<void> {
    const { storage } = this.o;
    if (this.pendingDeletes.size > 0) {
      const keys = [...this.pendingDeletes];
      await storage.delete(keys);
      for (const k of keys) this.pendingDeletes.delete(k);
    }
    for (const [id, u] of this.pendingAborts) {
      await storage.abort(u);
      this.pendingAborts.delete(id);
    }
  }

  private async round(): Promise<void> {
    const { store, storage } = this.o;
    // What an earlier round failed to remove (object store unreachable) goes first.
    await this.removePending();
    for (;;) {
      const r = await store.collectBlobs({ graceMs: this.o.graceMs, uploadIdleMs: this.o.uploadIdleMs });
      if (r.deleted.length > 0) {
        // The rows are gone already: objects whose delete fails are kept here and retried next round (else no
        // record of them would remain).
        for (const b of r.deleted) this.pendingDeletes.add(b.objectKey);
        this.o.observe?.blobsDeleted?.(r.deleted.length);
      }
      for (const u of r.abandoned) this.pendingAborts.set(u.id, u);
      this.o.forget?.(r.abandoned.map((u) => u.id));
      await this.removePending();
      // A full batch: there may be more.
      if (r.deleted.length + r.abandoned.length < 1000 || this.closed) break;
    }
    await storage.sweepOrphans(
      async (id) => (await store.getBlobUpload(id)) !== null,
      this.o.orphanMinAgeMs ?? 60_000,
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.running;
  }
}
