import type { Broadcast, BroadcastOptions } from "./broadcast.ts";
import type { CallOptions, CallResult, StreamItem } from "./call.ts";

/**
 * An immutable, sorted set of node ids that a quorum call addresses. Set operations return new
 * configurations bound to the same run.
 */
export class NodeSet {
  readonly ids: readonly string[];

  constructor(ids: Iterable<string>) {
    this.ids = Object.freeze([...new Set(ids)].sort());
  }

  get size(): number {
    return this.ids.length;
  }

  has(id: string): boolean {
    return this.ids.includes(id);
  }

  protected with(ids: Iterable<string>): this {
    const next = Object.create(Object.getPrototypeOf(this)) as this;
    Object.assign(next, this, { ids: Object.freeze([...new Set(ids)].sort()) });
    return Object.freeze(next);
  }

  add(...ids: string[]): this {
    return this.with([...this.ids, ...ids]);
  }

  remove(...ids: string[]): this {
    const drop = new Set(ids);
    return this.with(this.ids.filter((i) => !drop.has(i)));
  }

  union(other: NodeSet): this {
    return this.with([...this.ids, ...other.ids]);
  }

  difference(other: NodeSet): this {
    return this.with(this.ids.filter((i) => !other.has(i)));
  }

  intersection(other: NodeSet): this {
    return this.with(this.ids.filter((i) => other.has(i)));
  }
}

/** What a configuration calls through: its run. */
export interface ConfigurationRun {
  call(nodes: readonly string[], method: string, payload: unknown, opts?: CallOptions): Promise<CallResult>;
  stream(
    nodes: readonly string[],
    method: string,
    payload: unknown,
    opts?: CallOptions,
  ): AsyncGenerator<StreamItem>;
  broadcast(
    nodes: readonly string[],
    method: string,
    payload: unknown,
    opts: BroadcastOptions,
  ): Promise<Broadcast>;
}

/** A configuration bound to a run: `call`, `stream` and `broadcast` address exactly its nodes. */
export class Configuration extends NodeSet {
  private readonly run: ConfigurationRun;

  constructor(ids: Iterable<string>, run: ConfigurationRun) {
    super(ids);
    this.run = run;
  }

  call(method: string, payload?: unknown, opts?: CallOptions): Promise<CallResult> {
    return this.run.call(this.ids, method, payload, opts);
  }

  stream(method: string, payload?: unknown, opts?: CallOptions): AsyncGenerator<StreamItem> {
    return this.run.stream(this.ids, method, payload, opts);
  }

  broadcast(method: string, payload: unknown, opts: BroadcastOptions): Promise<Broadcast> {
    return this.run.broadcast(this.ids, method, payload, opts);
  }
}
