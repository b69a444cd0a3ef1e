import { describeError, FleetlinkError } from "../../protocol/errors.ts";
import type { Logger } from "../../stream/channel.ts";
import { Coalesced } from "../../util/coalesce.ts";

/** Where a feed writes: an HTTP response in the hub, any Writable in tests. */
export interface FeedSink {
  write(chunk: string): boolean;
  /** Bytes written and not yet taken by the peer. */
  readonly writableLength: number;
  destroy(): void;
  /** Ends the stream after what was written (destroy may drop it). */
  end?(): void;
  once(event: "close", fn: () => void): unknown;
}

/**
 * Builds what the feeds send: the part the feeds of one tenant share, and the detail of one run. `tenant` null:
 * every tenant (an unscoped principal's feed).
 */
export interface FeedSource {
  base(tenant: string | null): Promise<{ at?: number }>;
  run(runId: string, tenant: string | null): Promise<object | null>;
}

export interface FeedOptions {
  source: FeedSource;
  log: Logger;
  /** Feeds open at once on this replica; one more is refused with RATE_LIMITED. (Default: 32) */
  maxFeeds?: number;
  /** Least time between two updates, in ms: changes in between fold into one. (Default: 250) */
  minIntervalMs?: number;
  /** A comment line is sent this often, so proxies and the client see a live connection, in ms. (Default: 15000) */
  keepAliveMs?: number;
  /**
   * Updates are also built this often while feeds are open, in ms: some changes raise no store event (a
   * heartbeat, an approval, a node falling silent); an update that changes nothing is not sent. (Default: 2000)
   */
  refreshMs?: number;
  /** Bytes a client may leave unread; beyond that it is dropped. (Default: 1 MiB) */
  maxBufferedBytes?: number;
  /**
   * How often each feed's credential is checked again, in ms: a token revoked or expired while its feed is open
   * ends the feed within this bound. (Default: 2000)
   */
  recheckMs?: number;
}

/**
 * Checks a feed's credential again: null while it holds, else why it no longer does (the feed ends with a
 * `refused` event). A check that cannot tell (the store is down) should throw: the feed goes on.
 */
export type Recheck = () => Promise<{ status: number; message: string } | null>;

interface Client {
  sink: FeedSink;
  runId: string | null;
  /** The tenant whose things this client sees; null: every tenant. */
  tenant: string | null;
  /** The last document sent, so an update that changes nothing for this client is not sent. */
  last: string;
  recheck: Recheck | undefined;
}

/**
 * Live dashboard feeds as Server-Sent Events: every client gets a snapshot when it connects and a new one after
 * each change (at most one per `minIntervalMs`, built once per tenant and shared by that tenant's clients). A client that does not
 * read is dropped once `maxBufferedBytes` wait for it, so a stalled browser costs the hub a bounded buffer.
 */
export class Feeds {
  private readonly clients = new Set<Client>();
  private readonly o: Required<FeedOptions>;
  /** Builds and sends the snapshots: one build at a time, at most one per minIntervalMs, changes folded. */
  private readonly ticks: Coalesced;
  private readonly keepAlive: ReturnType<typeof setInterval>;
  private readonly refresh: ReturnType<typeof setInterval>;
  private readonly rechecks: ReturnType<typeof setInterval>;
  private rechecking = false;
  private closed = false;

  constructor(o: FeedOptions) {
    this.o = {
      ...o,
      maxFeeds: o.maxFeeds ?? 32,
      minIntervalMs: o.minIntervalMs ?? 250,
      keepAliveMs: o.keepAliveMs ?? 15_000,
      refreshMs: o.refreshMs ?? 2000,
      maxBufferedBytes: o.maxBufferedBytes ?? 1024 * 1024,
      recheckMs: o.recheckMs ?? 2000,
    };
    this.keepAlive = setInterval(() => {
      for (const c of this.clients) this.send(c, ": keep-alive\n\n");
    }, this.o.keepAliveMs);
    this.keepAlive.unref();
    this.refresh = setInterval(() => this.changed(), this.o.refreshMs);
    this.refresh.unref();
    this.rechecks = setInterval(() => void this.recheckAll(), this.o.recheckMs);
    this.rechecks.unref();
    this.ticks = new Coalesced(
      () => this.tick(),
      (e) => this.o.log.warn({ err: describeError(e) }, "dashboard snapshot failed"),
      { minIntervalMs: this.o.minIntervalMs },
    );
  }

  get size(): number {
    return this.clients.size;
  }

  /** Checks that one more feed may open (before any response is sent). */
  admit(): void {
    if (this.closed) throw new FleetlinkError("STREAM_CLOSED", "the hub is closing");
    if (this.clients.size >= this.o.maxFeeds)
      throw new FleetlinkError(
        "RATE_LIMITED",
        `too many live feeds on this replica (${this.o.maxFeeds}): close a dashboard tab or use another replica`,
      );
  }

  /**
   * Serves one feed, of one tenant's things (null: all), until the sink closes or `recheck` says its credential
   * no longer holds. Call `admit` first.
   */
  open(sink: FeedSink, runId: string | null, tenant: string | null = null, recheck?: Recheck): void {
    const c: Client = { sink, runId, tenant, last: "", recheck };
    this.clients.add(c);
    sink.once("close", () => this.clients.delete(c));
    // A retry hint for EventSource-style clients, and bytes on the wire at once so the client knows it is in.
    this.send(c, "retry: 2000\n: connected\n\n");
    this.changed();
  }

  /** Something changed: schedule an update (folded with others within `minIntervalMs`). */
  changed(): void {
    if (this.closed || this.clients.size === 0) return;
    this.ticks.trigger();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.keepAlive);
    clearInterval(this.refresh);
    clearInterval(this.rechecks);
    this.ticks.close();
    for (const c of this.clients) c.sink.destroy();
    this.clients.clear();
  }

  private async tick(): Promise<void> {
    const clients = [...this.clients];
    try {
      // One base per tenant that has a feed open (usually one: null, or the one tenant of its team), and one
      // detail per (run, tenant) asked for: a run of another tenant reads as none.
      const bases = new Map<string | null, { at?: number }>();
      const runs = new Map<string, object | null>();
      for (const c of clients) {
        if (!bases.has(c.tenant)) bases.set(c.tenant, await this.o.source.base(c.tenant));
        const key = `${c.tenant ?? ""}/${c.runId}`;
        if (c.runId !== null && !runs.has(key)) runs.set(key, await this.o.source.run(c.runId, c.tenant));
      }
      for (const c of clients) {
        if (!this.clients.has(c)) continue;
        const { at, ...base } = bases.get(c.tenant)!;
        // Compared without its time, so that an update in which nothing changed is not sent.
        const run = c.runId === null ? null : runs.get(`${c.tenant ?? ""}/${c.runId}`);
        const doc = JSON.stringify({ ...base, run });
        if (doc === c.last) continue;
        c.last = doc;
        this.send(c, `event: snapshot\ndata: {"at":${JSON.stringify(at ?? null)},${doc.slice(1)}\n\n`);
      }
    } catch (e) {
      // The store may be down for a moment: say so to the clients, try again at the next change.
      const msg = JSON.stringify({ message: describeError(e) });
      for (const c of clients) {
        c.last = "";
        this.send(c, `event: problem\ndata: ${msg}\n\n`);
      }
      this.o.log.warn({ err: describeError(e) }, "dashboard snapshot failed");
    }
  }

  /** Ends the feeds whose credential was revoked or expired since they opened (one round at a time). */
  private async recheckAll(): Promise<void> {
    if (this.rechecking || this.closed) return;
    this.rechecking = true;
    try {
      await Promise.all(
        [...this.clients].map(async (c) => {
          if (!c.recheck) return;
          let refused: { status: number; message: string } | null;
          try {
            refused = await c.recheck();
          } catch {
            return; // cannot tell now (the store is down): try again next round
          }
          if (!refused || !this.clients.has(c)) return;
          this.send(c, `event: refused\ndata: ${JSON.stringify(refused)}\n\n`);
          if (!this.clients.delete(c)) return; // dropped by send (it does not read)
          if (c.sink.end) c.sink.end();
          else c.sink.destroy();
        }),
      );
    } finally {
      this.rechecking = false;
    }
  }

  private send(c: Client, text: string): void {
    if (!this.clients.has(c)) return;
    c.sink.write(text);
    if (c.sink.writableLength > this.o.maxBufferedBytes) {
      this.o.log.warn(
        { buffered: c.sink.writableLength },
        "dashboard feed dropped: the client does not read",
      );
      this.clients.delete(c);
      c.sink.destroy();
    }
  }
}
