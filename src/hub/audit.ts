import { isFleetlinkError } from "../protocol/errors.ts";
import type { NewAuditEntry, Store } from "../store/store.ts";

/** Who acted: a request's principal (src/hub/http/principal.ts) or anything with the same four fields. */
export interface AuditActor {
  /** A principal id, or "admin-token" / "enroll-token" / "metrics-token" / "node:<id>". */
  id: string;
  role: string;
  tenant: string | null;
  address: string | null;
}

export type AuditOutcome = "ok" | "refused";

/** Where the audit lines go: the hub's pino logger. */
export interface AuditLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface AuditOptions {
  store: Pick<Store, "appendAudit">;
  log: AuditLog;
  /** Entries waiting for the store; one more is dropped (and counted in a warning). (Default: 10000) */
  maxQueue?: number;
  /** Entries per appendAudit call (the store takes at most 1000). (Default: 500) */
  maxBatch?: number;
  /** Refused entries kept per client address per window; the rest are counted, not stored. (Default: 20) */
  refusedPerAddress?: number;
  /** That window, in ms. (Default: 60000) */
  refusedWindowMs?: number;
}

/** The store refuses a detail over 4 KiB: a bigger one is replaced by a note saying how big it was. */
const MAX_DETAIL_BYTES = 4096;
/** Addresses whose refusals are counted at once; beyond that the table is cleared (a new window for all). */
const MAX_ADDRESSES = 10_000;

/**
 * The audit log: who (principal, role, tenant, address) did what to which target, and whether it was refused.
 * Each entry is one structured log line at info at once, and a row in the store's audit table, written in
 * batches: entries that arrive while a write is under way go together in the next appendAudit (a group commit),
 * so a busy hub costs the store one statement per batch, not per request. `record` never blocks and never
 * throws: the queue is bounded (entries beyond it are dropped and counted), a store failure is logged. Refused
 * entries are limited per address, so a flood of 403s cannot flood the table (nor the log).
 */
export class Audit {
  private readonly o: Required<Omit<AuditOptions, "store" | "log">>;
  private readonly store: AuditOptions["store"];
  private readonly log: AuditLog;
  private queue: NewAuditEntry[] = [];
  private writing: Promise<void> | null = null;
  private closed = false;
  private dropped = 0;
  /** Refused entries per address in the current window: [count, window start]. */
  private readonly refusals = new Map<string, { n: number; since: number; suppressed: number }>();

  constructor(o: AuditOptions) {
    this.store = o.store;
    this.log = o.log;
    this.o = {
      maxQueue: o.maxQueue ?? 10_000,
      maxBatch: Math.min(o.maxBatch ?? 500, 1000),
      refusedPerAddress: o.refusedPerAddress ?? 20,
      refusedWindowMs: o.refusedWindowMs ?? 60_000,
    };
  }

  /** Entries waiting for (or being written to) the store. */
  get pending(): number {
    return this.queue.length;
  }

  /** Records one action. Never throws, never waits. */
  record(
    p: AuditActor,
    action: string,
    target: string | null,
    outcome: AuditOutcome,
    detail?: Record<string, unknown>,
  ): void {
    if (this.closed) return;
    const address = clip(p.address, 200);
    if (outcome === "refused" && !this.admitRefused(address ?? "?")) return;
    // Clipped to what the store takes, so that one odd entry (a long id from a URL) cannot fail its batch.
    const entry: NewAuditEntry = {
      principal: clip(p.id, 200) ?? "?",
      role: clip(p.role, 100) ?? "?",
      tenant: p.tenant !== null && TENANT.test(p.tenant) ? p.tenant : null,
      address,
      action: clip(action, 100) ?? "?",
      target: clip(target, 500),
      outcome,
      detail: boundedDetail(detail),
    };
    this.log.info(
      {
        audit: {
          principal: entry.principal,
          role: entry.role,
          tenant: entry.tenant,
          address,
          action,
          target,
          outcome,
        },
      },
      "audit",
    );
    if (this.queue.length >= this.o.maxQueue) {
      if (this.dropped++ === 0)
        this.log.warn(
          { maxQueue: this.o.maxQueue },
          "audit queue full: entries are dropped until the store catches up",
        );
      return;
    }
    this.queue.push(entry);
    this.kick();
  }

  /** Resolves when every entry recorded before the call is written (or its write failed and was logged). */
  async flush(): Promise<void> {
    while (this.writing || this.queue.length > 0) {
      this.kick();
      await this.writing;
    }
  }

  /** Takes no more entries; writes what is queued. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  private kick(): void {
    if (this.writing || this.queue.length === 0) return;
    this.writing = this.drain().finally(() => {
      this.writing = null;
    });
  }

  /** Writes batches until the queue is empty; entries recorded meanwhile join the next batch. */
  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.length <= this.o.maxBatch ? this.queue : this.queue.slice(0, this.o.maxBatch);
      this.queue = batch === this.queue ? [] : this.queue.slice(batch.length);
      await this.append(batch);
      if (this.dropped > 0) {
        this.log.warn({ dropped: this.dropped }, "audit entries dropped (queue full)");
        this.dropped = 0;
      }
    }
  }

  private async append(batch: NewAuditEntry[]): Promise<void> {
    try {
      await this.store.appendAudit(batch);
    } catch (e) {
      // A batch is all or none: if the store refused one entry, the others are written one by one.
      if (batch.length > 1 && isFleetlinkError(e, "INVALID_ARGUMENT")) {
        for (const entry of batch) await this.append([entry]);
        return;
      }
      this.log.warn({ err: String(e), entries: batch.length }, "audit entries not stored");
    }
  }

  private admitRefused(address: string): boolean {
    const now = Date.now();
    let r = this.refusals.get(address);
    if (r && now - r.since >= this.o.refusedWindowMs) {
      if (r.suppressed > 0)
        this.log.warn(
          { address, suppressed: r.suppressed },
          "audit: refused requests not recorded (rate limit)",
        );
      this.refusals.delete(address);
      r = undefined;
    }
    if (!r) {
      if (this.refusals.size >= MAX_ADDRESSES) this.refusals.clear();
      r = { n: 0, since: now, suppressed: 0 };
      this.refusals.set(address, r);
    }
    if (r.n < this.o.refusedPerAddress) {
      r.n++;
      return true;
    }
    if (r.suppressed++ === 0)
      this.log.warn(
        { address, limit: this.o.refusedPerAddress, windowMs: this.o.refusedWindowMs },
        "audit: too many refused requests from this address; more are counted, not recorded",
      );
    return false;
  }
}

const TENANT = /^[a-z0-9][a-z0-9_-]{0,62}$/;

const clip = (v: string | null | undefined, max: number): string | null =>
  typeof v !== "string" || v.length === 0 ? null : v.length > max ? v.slice(0, max) : v;

const boundedDetail = (d: Record<string, unknown> | undefined): Record<string, unknown> | null => {
  if (d === undefined) return null;
  let text: string;
  try {
    text = JSON.stringify(d);
  } catch {
    return { unserializable: true };
  }
  const bytes = Buffer.byteLength(text);
  return bytes <= MAX_DETAIL_BYTES ? d : { truncated: true, bytes };
};
