import type { OpStatus } from "../protocol/checkpoint-types.ts";
import type { Store, StoredRecord } from "../store/store.ts";
import type { Logger } from "../stream/channel.ts";
import type { CallResult, NodeCall } from "./node-calls.ts";
import type { ObjectStore } from "./object-store.ts";

export type { HostStatus, OpStatus } from "../protocol/checkpoint-types.ts";

export type OpKind = "push" | "pull";

/** Outcomes are "ok" or the error kind (errorKind: a small fixed set), so they suit metric labels. */
export interface CheckpointObserver {
  /** A host finished its part; bytes: the part's size when it succeeded, else 0. */
  host(e: { kind: OpKind; outcome: string; bytes: number }): void;
  /** An operation this replica drove finished, after `seconds`. */
  operation(e: { kind: OpKind; outcome: string; seconds: number }): void;
}

/** What a push or pull is handed by the orchestrator that drives it. */
export interface OpContext {
  store: Store;
  objects: ObjectStore;
  log: Logger;
  observe?: CheckpointObserver;
  /** Complete checkpoints kept per run. */
  keep: number;
  /** Longest a host may take to push or pull, in ms. */
  transferTimeoutMs: number;
  callNodes(
    runId: string,
    calls: NodeCall[],
    timeoutMs: number,
    onResult?: (index: number, r: CallResult) => void,
  ): Promise<CallResult[]>;
}

export const opKey = (runId: string, kind: OpKind) => `ckpt:${runId}:${kind}`;

/**
 * The status record of one operation this replica drives, in the shared store (so any replica answers status
 * requests). Writes are serialised (each is a compare-and-set on the version the last one returned), and a
 * beat rewrites it every `beatMs` while the operation runs, so other replicas do not take it for abandoned.
 */
export class OpRecord {
  private rec: StoredRecord<OpStatus>;
  private readonly store: Store;
  private chain: Promise<unknown> = Promise.resolve();
  private beat: ReturnType<typeof setInterval> | undefined;

  constructor(store: Store, rec: StoredRecord<OpStatus>, beatMs = 5000) {
    this.store = store;
    this.rec = rec;
    this.beat = setInterval(() => void this.save({}).catch(() => {}), beatMs);
    this.beat.unref();
  }

  get value(): OpStatus {
    return this.rec.value;
  }

  /** Merges `patch` (or what it returns, given the current value) into the record; resolves with the new value. */
  save(patch: Partial<OpStatus> | ((cur: OpStatus) => Partial<OpStatus>)): Promise<OpStatus> {
    const p = this.chain.then(async () => {
      const cur = this.rec.value;
      const next = { ...cur, ...(typeof patch === "function" ? patch(cur) : patch), updatedAt: Date.now() };
      this.rec = await this.store.putRecord(this.rec.key, next, this.rec.version);
      return this.rec.value;
    });
    this.chain = p.catch(() => {});
    return p;
  }

  /** The operation ended: no more beats. */
  end(): void {
    clearInterval(this.beat);
  }
}
