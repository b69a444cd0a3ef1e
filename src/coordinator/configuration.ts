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
