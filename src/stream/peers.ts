/**
 * The current stream of each peer. Attaching returns the stream it replaced, so only that code path (the one
 * that actually replaced it) acts on the old stream's work; detaching removes a stream only if it is still
 * the current one, compared by identity, so an old stream's late cleanup never detaches its replacement.
 */
export class PeerTable<S> {
  private readonly current = new Map<string, S>();

  attach(peer: string, stream: S): S | undefined {
    const prev = this.current.get(peer);
    this.current.set(peer, stream);
    return prev === stream ? undefined : prev;
  }

  /** True if `stream` was the peer's current stream and is now detached. */
  detach(peer: string, stream: S): boolean {
    if (this.current.get(peer) !== stream) return false;
    this.current.delete(peer);
    return true;
  }

  get(peer: string): S | undefined {
    return this.current.get(peer);
  }

  isCurrent(peer: string, stream: S): boolean {
    return this.current.get(peer) === stream;
  }

  peers(): string[] {
    return [...this.current.keys()];
  }

  values(): S[] {
    return [...this.current.values()];
  }

  get size(): number {
    return this.current.size;
  }
}
