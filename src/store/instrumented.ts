import { Counter, Histogram, type Registry } from "prom-client";
import { ErrorCodes } from "../protocol/errors.ts";
import type { Instruction, Reply } from "../protocol/types.ts";
import type {
  ClaimInstructionsInput,
  ExtendLeasesInput,
  OpenSessionInput,
  PushResult,
  ReleaseInput,
  Store,
  StoreReplyResult,
} from "./store.ts";

/** Short store calls (µs on SQLite) up to slow ones (a congested database). */
const STORE_BUCKETS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** A reply comes in ms from a fast handler, or after minutes from a long one. */
const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/**
 * The error replies the hub makes itself in `sweep`. They are counted when claimed (each reply is claimed
 * exactly once across replicas), because `sweep` returns only how many it made.
 */
const SWEEP_OUTCOMES: ReadonlySet<string> = new Set([
  "FLEETLINK_E_NODE_UNAVAILABLE",
  "FLEETLINK_E_DELIVERY_FAILED",
  "FLEETLINK_E_MESSAGE_EXPIRED",
]);
/**
 * A node chooses its error codes: only fleetlink's own are label values, anything else is "other", so a
 * node cannot grow the number of series without bound.
 */
const KNOWN_CODES: ReadonlySet<string> = new Set(Object.keys(ErrorCodes).map((n) => `FLEETLINK_E_${n}`));
export const outcomeLabel = (code: string | undefined): string =>
  code === undefined ? "ok" : KNOWN_CODES.has(code) ? code : "other";
/** Instructions remembered for reply latency and lease expiries; the oldest are forgotten first. */
const MAX_TRACKED = 50_000;

export const createStoreMetrics = (registers: Registry[]) => ({
  operationSeconds: new Histogram({
    name: "fleetlink_store_operation_seconds",
    help: "Time of each store call made by this replica, by store method and backend.",
    labelNames: ["operation", "backend"] as const,
    buckets: STORE_BUCKETS,
    registers,
  }),
  operationErrors: new Counter({
    name: "fleetlink_store_errors_total",
    help: "Store calls of this replica that failed (threw or rejected), by store method and backend.",
    labelNames: ["operation", "backend"] as const,
    registers,
  }),
  pushed: new Counter({
    name: "fleetlink_instructions_pushed_total",
    help: "Instructions stored by pushes through this replica.",
    registers,
  }),
  claimed: new Counter({
    name: "fleetlink_instructions_claimed_total",
    help: "Instruction deliveries leased by this replica (a redelivery counts again).",
    registers,
  }),
  redeliveries: new Counter({
    name: "fleetlink_redeliveries_total",
    help: "Claims of an instruction delivered before (attempts > 1): after a lease ran out or a release.",
    registers,
  }),
  leaseExpiries: new Counter({
    name: "fleetlink_lease_expiries_total",
    help: "Redeliveries whose previous lease, taken through this replica, ran out without a reply or release.",
    registers,
  }),
  repliesStored: new Counter({
    name: "fleetlink_replies_stored_total",
    help: 'Replies stored, by outcome: "ok", a fleetlink error code (node errors, CANCELLED, sweep outcomes) or "other".',
    labelNames: ["outcome"] as const,
    registers,
  }),
  repliesDuplicate: new Counter({
    name: "fleetlink_replies_duplicate_total",
    help: "Replies to an instruction already answered (a retransmission or a redelivered handler run).",
    registers,
  }),
  repliesRefused: new Counter({
    name: "fleetlink_replies_refused_total",
    help: "Replies the store refused, by error code (e.g. the instruction had expired or ended).",
    labelNames: ["code"] as const,
    registers,
  }),
  replyLatency: new Histogram({
    name: "fleetlink_reply_latency_seconds",
    help: "Node reply stored minus instruction created (store clock), for instructions this replica pushed or claimed.",
    buckets: LATENCY_BUCKETS,
    registers,
  }),
  sweepReplies: new Counter({
    name: "fleetlink_sweep_replies_total",
    help: "Error replies this replica's sweeps made for instructions that ended unanswered (all codes).",
    registers,
  }),
  sweepSeconds: new Histogram({
    name: "fleetlink_sweep_duration_seconds",
    help: "Time of each sweep of this replica (ends overdue instructions, marks silent nodes offline).",
    buckets: STORE_BUCKETS,
    registers,
  }),
});
export type StoreMetrics = ReturnType<typeof createStoreMetrics>;

interface Tracked {
  createdAt: number;
  expiresAt: number;
  dst: string;
  /** The lease as last taken or extended through this replica; null: released or not known. */
  leaseUntil: number | null;
  leaseOwner: string | null;
  /** Store clock minus host clock at the claim (latency included), to estimate extended leases. */
  offset: number;
}

/** What one replica has seen of its instructions, bounded: enough to time replies and spot expired leases. */
export class Observations {
  private readonly tracked = new Map<string, Tracked>();
  readonly m: StoreMetrics;
  private readonly leaseMs: number;

  constructor(m: StoreMetrics, leaseMs: number) {
    this.m = m;
    this.leaseMs = leaseMs;
  }

  private track(id: string, t: Tracked): void {
    this.tracked.delete(id);
    if (this.tracked.size >= MAX_TRACKED) this.tracked.delete(this.tracked.keys().next().value!);
    this.tracked.set(id, t);
  }

  pushed(rows: readonly Instruction[]): void {
    this.m.pushed.inc(rows.length);
    for (const i of rows) this.remember(i, null);
  }

  claimed(rows: readonly Instruction[], input?: ClaimInstructionsInput): void {
    this.m.claimed.inc(rows.length);
    const leaseMs = input?.leaseMs ?? this.leaseMs;
    for (const i of rows) {
      if (i.attempts > 1) {
        this.m.redeliveries.inc();
        const prev = this.tracked.get(i.id);
        // The claim happened at leaseUntil - leaseMs on the store's clock (unless capped at the expiry).
        const claimedAt = i.leaseUntil === null ? null : i.leaseUntil - leaseMs;
        if (prev?.leaseUntil != null && claimedAt !== null && prev.leaseUntil <= claimedAt)
          this.m.leaseExpiries.inc();
      }
      this.remember(i, i.leaseUntil === null ? null : i.leaseUntil - leaseMs - Date.now());
    }
  }

  private remember(i: Instruction, offset: number | null): void {
    this.track(i.id, {
      createdAt: i.createdAt,
      expiresAt: i.expiresAt,
      dst: i.dst,
      leaseUntil: i.leaseUntil,
      leaseOwner: i.leaseOwner,
      offset: offset ?? 0,
    });
  }

  stored(results: readonly StoreReplyResult[]): void {
    for (const r of results) {
      if (!r.ok) this.m.repliesRefused.inc({ code: outcomeLabel(r.error.code) });
      else if (r.duplicate) this.m.repliesDuplicate.inc();
      else this.replied(r.reply, true);
    }
  }

  private replied(reply: Reply, observeLatency: boolean): void {
    this.m.repliesStored.inc({ outcome: outcomeLabel(reply.error?.code) });
    const t = this.tracked.get(reply.replyTo);
    if (!t) return;
    this.tracked.delete(reply.replyTo);
    if (observeLatency) this.m.replyLatency.observe(Math.max(0, reply.createdAt - t.createdAt) / 1000);
  }

  /** Withdrawn instructions end with a CANCELLED reply that the store makes already claimed. */
  withdrawn(ids: readonly string[]): void {
    if (ids.length) this.m.repliesStored.inc({ outcome: "FLEETLINK_E_CANCELLED" }, ids.length);
    for (const id of ids) this.tracked.delete(id);
  }

  repliesClaimed(replies: readonly Reply[]): void {
    for (const r of replies) if (r.error && SWEEP_OUTCOMES.has(r.error.code)) this.replied(r, false);
  }

  released(input: ReleaseInput): void {
    const except = new Set(input.exceptIds ?? []);
    for (const [id, t] of this.tracked)
      if (t.dst === input.nodeId && !except.has(id) && (!input.owner || t.leaseOwner === input.owner))
        t.leaseUntil = null;
  }

  /** A new session releases the node's leases; kept ones get a fresh lease of unknown end (not judged). */
  sessionOpened(input: OpenSessionInput): void {
    for (const t of this.tracked.values()) if (t.dst === input.nodeId) t.leaseUntil = null;
  }

  extended(ids: readonly string[], input: ExtendLeasesInput): void {
    const leaseMs = input.leaseMs ?? this.leaseMs;
    for (const id of ids) {
      const t = this.tracked.get(id);
      if (t?.leaseUntil != null) t.leaseUntil = Math.min(Date.now() + t.offset + leaseMs, t.expiresAt);
    }
  }
}

/** Counts the outcomes of one store method from its result (and arguments). */
export type StoreHook = (o: Observations, result: never, args: never, seconds: number) => void;

/**
 * Store method → what its result says. Methods without an entry are still timed. A new store method that
 * pushes, claims or stores replies gets an entry here, e.g. a push of instructions leased at once:
 * `(o, rows: Instruction[]) => { o.pushed(rows); o.claimed(rows); }`.
 */
export const STORE_HOOKS: Record<string, StoreHook> = {
  // Instructions pushed already leased to a stream here (the hub's fast path) are claims as well.
  pushInstructions: (o, rows: Instruction[]) => {
    o.pushed(rows);
    const leased = rows.filter((r) => r.state === "leased");
    if (leased.length > 0) o.claimed(leased);
  },
  pushBatch: (o, results: PushResult[]) => {
    for (const r of results)
      if (r.ok) STORE_HOOKS.pushInstructions!(o, r.instructions as never, [] as never, 0);
  },
  claimInstructions: (o, rows: Instruction[], [input]: [ClaimInstructionsInput]) => o.claimed(rows, input),
  storeReplies: (o, results: StoreReplyResult[]) => o.stored(results),
  withdrawInstructions: (o, ids: string[]) => o.withdrawn(ids),
  claimReplies: (o, replies: Reply[]) => o.repliesClaimed(replies),
  releaseInstructions: (o, _n: number, [input]: [ReleaseInput]) => o.released(input),
  openSession: (o, _r: unknown, [input]: [OpenSessionInput]) => o.sessionOpened(input),
  leaveSession: (o, r: { released: number }, [input]: [{ nodeId: string }]) => {
    if (r.released > 0) o.released({ nodeId: input.nodeId });
  },
  extendLeases: (o, ids: string[], [input]: [ExtendLeasesInput]) => o.extended(ids, input),
  sweep: (o, made: number, _a, seconds) => {
    o.m.sweepSeconds.observe(seconds);
    if (made > 0) o.m.sweepReplies.inc(made);
  },
};

/**
 * Wraps a store so every method call is timed (`fleetlink_store_operation_seconds`) and its outcomes are
 * counted through STORE_HOOKS. Properties pass through; methods run on the original store.
 */
export const instrumentStore = (store: Store, m: StoreMetrics, hooks = STORE_HOOKS): Store => {
  const seen = new Observations(m, store.options.leaseMs);
  const wrappers = new Map<string, (...args: unknown[]) => unknown>();
  const wrap = (name: string, fn: (...args: unknown[]) => unknown) => {
    const labels = { operation: name, backend: store.backend };
    const hook = Object.hasOwn(hooks, name) ? hooks[name] : undefined;
    return (...args: unknown[]) => {
      const end = m.operationSeconds.startTimer(labels);
      const done = (result: unknown) => {
        const seconds = end();
        // A counting bug must never fail the store call it observes.
        try {
          hook?.(seen, result as never, args as never, seconds);
        } catch {}
        return result;
      };
      const failed = (e: unknown) => {
        end();
        m.operationErrors.inc(labels);
        throw e;
      };
      let out: unknown;
      try {
        out = fn.apply(store, args);
      } catch (e) {
        return failed(e);
      }
      return out instanceof Promise ? out.then(done, failed) : done(out);
    };
  };
  return new Proxy(store, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof prop !== "string" || typeof v !== "function" || prop === "constructor") return v;
      let w = wrappers.get(prop);
      if (!w) {
        w = wrap(prop, v as (...args: unknown[]) => unknown);
        wrappers.set(prop, w);
      }
      return w;
    },
  });
};
