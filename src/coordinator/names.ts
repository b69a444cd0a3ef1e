import type { NodeRecord } from "../protocol/types.ts";

/** A node as results and errors report it: its id, and its name when the hub listed one. */
export interface NodeRef {
  id: string;
  /** The name it enrolled with; null if the hub's node listing did not have this id (or could not be read). */
  name: string | null;
}

/**
 * The names of node ids, learnt from node listings (`fleet.nodes()`, configurations made of node records) and
 * cached for the fleet's life. A call over ids never seen asks the hub's listing once for all of them, alongside
 * its push; ids already known (or already asked about) cost no request.
 */
export class NodeNames {
  private readonly known = new Map<string, string>();
  /** Ids a listing was asked about: not asked again, even if it did not have them. */
  private readonly asked = new Set<string>();
  private readonly list: () => Promise<Pick<NodeRecord, "id" | "name">[]>;
  private listing: Promise<void> | null = null;

  constructor(list: () => Promise<Pick<NodeRecord, "id" | "name">[]>) {
    this.list = list;
  }

  /** Records names from a listing the caller already has. */
  learn(nodes: Iterable<{ id: string; name?: unknown }>): void {
    for (const n of nodes)
      if (typeof n.name === "string") {
        this.known.set(n.id, n.name);
        this.asked.add(n.id);
      }
  }

  get(id: string): string | null {
    return this.known.get(id) ?? null;
  }

  /**
   * Makes sure the names of `ids` were looked up: one listing if some were never seen, none otherwise. Never
   * rejects: a listing that fails leaves those names null (and is not retried for them).
   */
  async resolve(ids: readonly string[]): Promise<void> {
    if (ids.every((id) => this.asked.has(id))) return;
    // One listing at a time answers every call waiting for it; ids it came too early for ask again.
    while (this.listing) await this.listing;
    if (ids.every((id) => this.asked.has(id))) return;
    const want = ids.filter((id) => !this.asked.has(id));
    this.listing = this.list()
      .then(
        (nodes) => this.learn(nodes),
        () => {},
      )
      .finally(() => {
        for (const id of want) this.asked.add(id);
        this.listing = null;
      });
    await this.listing;
  }

  /** Id and name of each node, in the given order. */
  refs(ids: Iterable<string>): Map<string, NodeRef> {
    return new Map([...ids].map((id) => [id, { id, name: this.get(id) }]));
  }
}
