import net from "node:net";

/**
 * A fault-injecting TCP proxy on loopback in front of one hub replica; the node under test only ever sees
 * the proxy's address. Faults, as a network would cause them:
 * - `cut()`: every connection through it is reset at once (a NAT that forgot the flow, a crashed middlebox).
 * - `blackhole()` … `heal()`: nothing crosses in either direction and neither side learns of a close (a cut
 *   cable); new connections hang. `heal()` resets the connections whose other side left meanwhile and the
 *   ones that hung, as the peer's RST would once packets flow again, and delivers what was held back.
 * - `down()` … `up()`: connections are reset and new ones refused (a dead host), while the replica behind it
 *   restarts; `retarget(port)` points it at the restarted replica.
 */
export class FaultProxy {
  private readonly server: net.Server;
  private target: number;
  private holed = false;
  private refusing = false;
  private readonly sockets = new Set<net.Socket>();
  private readonly orphans = new Set<net.Socket>();
  private readonly held = new Set<net.Socket>();
  private readonly flushes = new Set<() => void>();
  /** Connections accepted so far (each is one dial of the node). */
  accepted = 0;
  port = 0;

  private constructor(targetPort: number) {
    this.target = targetPort;
    this.server = net.createServer((client) => this.accept(client));
  }

  static async start(targetPort: number): Promise<FaultProxy> {
    const p = new FaultProxy(targetPort);
    await new Promise<void>((r) => p.server.listen(0, "127.0.0.1", r));
    p.port = (p.server.address() as net.AddressInfo).port;
    return p;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private track(s: net.Socket): void {
    this.sockets.add(s);
    s.on("error", () => s.destroy());
    s.on("close", () => {
      this.sockets.delete(s);
      this.orphans.delete(s);
      this.held.delete(s);
    });
  }

  private accept(client: net.Socket): void {
    this.track(client);
    if (this.refusing) return void client.resetAndDestroy();
    this.accepted++;
    if (this.holed) return void this.held.add(client);
    const upstream = net.connect(this.target, "127.0.0.1");
    this.track(upstream);
    this.pipe(client, upstream);
    this.pipe(upstream, client);
  }

  private pipe(from: net.Socket, to: net.Socket): void {
    const queue: Buffer[] = [];
    const flush = () => {
      while (queue.length > 0 && to.writable) to.write(queue.shift()!);
    };
    this.flushes.add(flush);
    from.on("data", (d: Buffer) => {
      if (this.holed) queue.push(d);
      else if (to.writable) to.write(d);
    });
    // A side that leaves during a blackhole is not seen leaving: its partner becomes an orphan.
    from.on("close", () => {
      this.flushes.delete(flush);
      if (this.holed) this.orphans.add(to);
      else to.destroy();
    });
  }

  /** Resets every connection through the proxy now. */
  cut(): void {
    for (const s of [...this.sockets]) s.resetAndDestroy();
  }

  blackhole(): void {
    this.holed = true;
  }

  heal(): void {
    this.holed = false;
    for (const s of [...this.orphans, ...this.held]) s.resetAndDestroy();
    for (const f of [...this.flushes]) f();
  }

  down(): void {
    this.refusing = true;
    this.cut();
  }

  up(): void {
    this.refusing = false;
  }

  retarget(port: number): void {
    this.target = port;
  }

  async close(): Promise<void> {
    for (const s of [...this.sockets]) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
