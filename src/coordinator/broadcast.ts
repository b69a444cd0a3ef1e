import type { FleetlinkError } from "../protocol/errors.ts";
import { type StreamItem, toStreamItem } from "./call.ts";
import type { HubClient } from "./http.ts";
import type { NodeNames } from "./names.ts";
import type { Wait } from "./push.ts";

export interface BroadcastOptions {
  /** Instruction TTL in ms: nodes offline now get the instruction if they reconnect within it. */
  ttlMs: number;
  /** Deadline for the push itself, failover included. (Default: ttlMs) */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** W3C trace context, as for a call (docs/tracing.md). (Default: the active OpenTelemetry span's, if any) */
  traceparent?: string;
}

export type BroadcastNodeState = "pending" | "delivered" | "replied" | "failed";

/** Tracks one broadcast: per node pending → delivered → replied | failed. */
export class Broadcast {
  private readonly outcome = new Map<string, StreamItem>();
  readonly instructions: ReadonlyMap<string, string>; // node → instruction id
  readonly done: Promise<Map<string, StreamItem>>;
  private readonly run: { id: string; http: HubClient };

  /** `run.names`: each outcome carries its node's name (null if unknown). */
  constructor(run: { id: string; http: HubClient; names?: NodeNames }, waits: Wait[]) {
    this.run = run;
    this.instructions = new Map(waits.map((w) => [w.dst, w.id]));
    const nameOf = (id: string) => run.names?.get(id) ?? null;
    this.done = Promise.all(
      waits.map((w) =>
        w.result.then(
          (r) => this.outcome.set(w.dst, toStreamItem(w.dst, r, nameOf(w.dst))),
          (e: unknown) =>
            this.outcome.set(w.dst, {
              node: w.dst,
              name: nameOf(w.dst),
              ok: false,
              error: e as FleetlinkError,
            }),
        ),
      ),
    ).then(() => new Map(this.outcome));
  }

  /** Per node: replied / failed once known, else delivered (the hub handed it to the node) or pending. */
  async status(): Promise<Map<string, BroadcastNodeState>> {
    const { instructions } = await this.run.http.request<{
      instructions: { id: string; dst: string; attempts: number }[];
    }>("POST", `/v1/runs/${this.run.id}/instructions/query`, { ids: [...this.instructions.values()] });
    const delivered = new Set(instructions.filter((i) => i.attempts > 0).map((i) => i.dst));
    const out = new Map<string, BroadcastNodeState>();
    for (const node of this.instructions.keys()) {
      const o = this.outcome.get(node);
      out.set(node, o ? (o.ok ? "replied" : "failed") : delivered.has(node) ? "delivered" : "pending");
    }
    return out;
  }
}
