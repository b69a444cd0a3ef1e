import net from "node:net";

export type ProxyMode = "pass" | "drop" | "blackhole";

/**
 * A fault-injecting TCP proxy on loopback: `pass` forwards (optionally delayed), `drop` resets every
 * connection and refuses new ones, `blackhole` keeps sockets open but forwards nothing (like a cut cable).
 */
export const startProxy = async (target: { host: string; port: number }) => {
  let mode: ProxyMode = "pass";
  let delayMs = 0;
  const conns = new Set<{ client: net.Socket; upstream: net.Socket; since: number }>();
  const forward = (from: net.Socket, to: net.Socket) => {
    from.on("data", (d) => {
      if (mode !== "pass") return; // blackholed bytes are lost, as on a dead link
      if (delayMs) setTimeout(() => to.writable && to.write(d), delayMs);
      else if (to.writable) to.write(d);
    });
  };
  const server = net.createServer((client) => {
    if (mode === "drop") {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    const c = { client, upstream, since: Date.now() };
    conns.add(c);
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      conns.delete(c);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    /** Connections open through the proxy now. */
    get connections() {
      return conns.size;
    },
    /** How long the oldest connection open now has been open, in ms (0: none). */
    get oldestMs() {
      let since = Number.POSITIVE_INFINITY;
      for (const c of conns) since = Math.min(since, c.since);
      return since === Number.POSITIVE_INFINITY ? 0 : Date.now() - since;
    },
    set(m: ProxyMode, opts: { delayMs?: number } = {}) {
      mode = m;
      delayMs = opts.delayMs ?? 0;
      if (m === "drop") for (const c of conns) c.client.resetAndDestroy();
    },
    async close() {
      for (const c of conns) {
        c.client.destroy();
        c.upstream.destroy();
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
};
