import type { HostRole, Roles, TakeoverStatus } from "../protocol/checkpoint-types.ts";
import { FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import type { Store, StoredRecord } from "../store/store.ts";
import type { Logger } from "../stream/channel.ts";
import { backoffDelay } from "../util/backoff.ts";
import { errorKind } from "./object-store.ts";

export type { TakeoverStatus } from "../protocol/checkpoint-types.ts";

/** How automatic standby takeovers are retried. */
export interface TakeoverRetry {
  /** Attempts per failure of a host before giving up (the status then says why). (Default: 5) */
  attempts: number;
  /** Wait after the first failed attempt, doubled after each further one, in ms. (Default: 2000) */
  baseDelayMs: number;
  /** Longest wait between attempts, in ms. (Default: 60000) */
  maxDelayMs: number;
}
export const DEFAULT_TAKEOVER_RETRY: TakeoverRetry = { attempts: 5, baseDelayMs: 2000, maxDelayMs: 60_000 };

const keyPrefix = (runId: string) => `ckpt:${runId}:takeover:`;
const takeoverKey = (runId: string, hostIdx: number) => `${keyPrefix(runId)}${hostIdx}`;

/** The wait before attempt `attempt + 1`, after `attempt` failed ones. */
export const retryDelay = (attempt: number, p: TakeoverRetry): number =>
  // No jitter: one replica drives a host's takeover, and the status shows when the next attempt is due.
  backoffDelay({ initialMs: p.baseDelayMs, maxMs: p.maxDelayMs, jitter: 0 }, attempt - 1);

/** Writes a host's takeover status whatever its current version (last writer wins: a manual activation). */
export const putTakeover = async (store: Store, runId: string, value: TakeoverStatus): Promise<void> => {
  const key = takeoverKey(runId, value.hostIdx);
  for (let i = 0; ; i++) {
    const cur = await store.getRecord(key);
    try {
      await store.putRecord(key, value, cur?.version ?? null);
      return;
    } catch (e) {
      if (!isFleetlinkError(e, "STATUS_CONFLICT") || i >= 3) throw e;
    }
  }
};

/**
 * The takeovers that concern the run's current roles: of hosts whose node failed (attempts, next attempt,
 * the reason it gave up) and of standbys now holding a host. Earlier episodes are left out.
 */
export const takeoverStatus = async (store: Store, roles: Roles | null): Promise<TakeoverStatus[]> => {
  if (!roles) return [];
  const out: TakeoverStatus[] = [];
  for (const rec of await store.listRecords<TakeoverStatus>(keyPrefix(roles.runId))) {
    const t = rec.value;
    const h = roles.hosts[t.hostIdx];
    if (h && (t.from === h.nodeId || (t.status === "ok" && t.to === h.nodeId))) out.push(t);
  }
  return out.sort((a, b) => a.hostIdx - b.hostIdx);
};

export interface TakeoverMonitorOptions {
  store: Store;
  /** Makes the host's first standby take over (restore, then the role record names it). */
  activate: (runId: string, hostIdx: number) => Promise<Roles>;
  log: Logger;
  /** An attempt claimed longer ago than this was abandoned (its replica died), in ms. */
  abandonedMs: number;
}

/**
 * Watches every run's hosts: a host whose node missed its heartbeat window and that has a standby is taken
 * over (`activate`). A failed takeover is retried with exponential backoff, at most `retry.attempts` times for
 * one failure of a node; then the host's takeover status is `failed` with the reason, and the monitor leaves
 * it alone until the node comes back, the roles are reassigned, or an operator activates a standby. Each
 * attempt is claimed in the shared store first (compare-and-set), so replicas never attempt one twice.
 */
export class TakeoverMonitor {
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly busy = new Set<string>();

  private readonly o: TakeoverMonitorOptions;

  constructor(o: TakeoverMonitorOptions) {
    this.o = o;
  }

  start(intervalMs: number, retry: TakeoverRetry): void {
    clearInterval(this.timer);
    this.timer = setInterval(() => {
      void this.tick(retry).catch((e) => this.o.log.warn({ err: String(e) }, "standby monitor failed"));
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async tick(retry: TakeoverRetry): Promise<void> {
    const { store } = this.o;
    const now = await store.now();
    for (const rec of await store.listRecords<Roles>("roles:")) {
      const roles = rec.value;
      if (!roles.hosts.some((h) => h.standby.length > 0)) continue;
      const entries = new Map<number, StoredRecord<TakeoverStatus>>();
      for (const t of await store.listRecords<TakeoverStatus>(keyPrefix(roles.runId)))
        entries.set(t.value.hostIdx, t);
      for (const h of roles.hosts) {
        const k = `${roles.runId}:${h.hostIdx}`;
        if (h.standby.length === 0 || this.busy.has(k)) continue;
        const node = await store.getNode(h.nodeId).catch(() => null);
        const down = !node || node.status === "unregistered" || (node.onlineUntil ?? 0) <= now;
        const prev = entries.get(h.hostIdx) ?? null;
        const open = prev !== null && prev.value.from === h.nodeId;
        if (!down) {
          if (open && (prev.value.status === "retrying" || prev.value.status === "failed"))
            await store
              .putRecord(prev.key, { ...prev.value, status: "recovered", updatedAt: now }, prev.version)
              .catch(() => {});
          continue;
        }
        if (open) {
          const t = prev.value;
          if (t.status === "failed") continue;
          if (t.status === "retrying" && now < (t.nextAttemptAt ?? 0)) continue;
          if (t.status === "in_progress" && now - t.updatedAt < this.o.abandonedMs) continue;
        }
        this.busy.add(k);
        void this.attempt(roles.runId, h, open ? prev : null, prev?.version ?? null, now, retry)
          .catch((e) => this.o.log.warn({ err: String(e), host: k }, "standby takeover bookkeeping failed"))
          .finally(() => this.busy.delete(k));
      }
    }
  }

  private async attempt(
    runId: string,
    h: HostRole,
    prev: StoredRecord<TakeoverStatus> | null,
    version: number | null,
    now: number,
    retry: TakeoverRetry,
  ): Promise<void> {
    const { store } = this.o;
    // Attempts count per failure of the node: a takeover that recovered or succeeded starts afresh.
    const carried = prev?.value.status === "retrying" || prev?.value.status === "in_progress";
    const attempts = (carried ? prev!.value.attempts : 0) + 1;
    const to = h.standby[0] ?? null;
    let claimed: StoredRecord<TakeoverStatus>;
    try {
      claimed = await store.putRecord<TakeoverStatus>(
        takeoverKey(runId, h.hostIdx),
        { hostIdx: h.hostIdx, from: h.nodeId, to, status: "in_progress", attempts, updatedAt: now },
        version,
      );
    } catch (e) {
      if (isFleetlinkError(e, "STATUS_CONFLICT")) return; // another replica claimed this attempt
      throw e;
    }
    try {
      // A standby that is itself offline cannot answer: say so now rather than leave an instruction waiting.
      const sb = to === null ? null : await store.getNode(to).catch(() => null);
      if (!sb || sb.status === "unregistered" || (sb.onlineUntil ?? 0) <= (await store.now()))
        throw new FleetlinkError("NODE_UNAVAILABLE", `standby node ${to} is offline`);
      await this.o.activate(runId, h.hostIdx); // records status ok itself
    } catch (e) {
      const giveUp = attempts >= retry.attempts;
      const at = await store.now();
      const message = (e as Error).message;
      const value: TakeoverStatus = {
        ...claimed.value,
        status: giveUp ? "failed" : "retrying",
        error: {
          kind: errorKind(e),
          message: giveUp ? `gave up after ${attempts} attempts; last: ${message}` : message,
        },
        updatedAt: at,
        ...(giveUp ? {} : { nextAttemptAt: at + retryDelay(attempts, retry) }),
      };
      await store.putRecord(claimed.key, value, claimed.version).catch(() => {});
      this.o.log.warn(
        { runId, hostIdx: h.hostIdx, from: h.nodeId, to, attempts, err: message },
        giveUp ? "standby takeover failed; giving up" : "standby takeover failed; will retry",
      );
    }
  }
}
