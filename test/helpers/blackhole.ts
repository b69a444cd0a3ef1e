import net from "node:net";

/**
 * A TCP proxy on loopback that models a partition the way a cut cable does, for both directions at once:
 * while `cut()`, bytes are held back (TCP would retransmit them, not lose them), a socket closed on one side
 * stays open on the other (no FIN or RST crosses the cut, so a hub keeps a dead coordinator's stream
 * "open"), and new connections hang. `heal()` delivers what was held and resets the sockets whose peer left
 * during the cut and the connections that hung, as a real peer's RST would once packets flow again.
 */
export const startBlackhole = async (target: { host: string; port: number }) => {
  let cut = false;
  const orphans = new Set<net.Socket>();
  const held = new Set<net.Socket>();
  const flushes = new Set<() => void>();
  const all = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    all.add(s);
    s.on("error", () => s.destroy());
    s.on("close", () => {
      all.delete(s);
      orphans.delete(s);
      held.delete(s);
    });
  };
  const pipe = (from: net.Socket, to: net.Socket) => {
    const queue: Buffer[] = [];
    const flush = () => {
      while (queue.length > 0 && to.writable) to.write(queue.shift()!);
    };
    flushes.add(flush);
    from.on("data", (d) => {
      if (cut) queue.push(d);
      else if (to.writable) to.write(d);
    });
    // A peer that leaves during the cut is not seen leaving: its partner becomes an orphan.
    from.on("close", () => {
      flushes.delete(flush);
      if (cut) orphans.add(to);
      else to.destroy();
    });
  };
  const server = net.createServer((client) => {
    track(client);
    if (cut) {
      held.add(client);
      return;
    }
    const upstream = net.connect(target.port, target.host);
    track(upstream);
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    get isCut() {
      return cut;
    },
    /** Sockets open through the proxy now, both sides counted. */
    get sockets() {
      return all.size;
    },
    cut() {
      cut = true;
    },
    heal() {
      cut = false;
      for (const s of [...orphans, ...held]) s.resetAndDestroy();
      for (const f of flushes) f();
    },
    async close() {
      for (const s of all) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
};
export type Blackhole = Awaited<ReturnType<typeof startBlackhole>>;
