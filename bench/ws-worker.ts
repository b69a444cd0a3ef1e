// Raw `ws` baselines for the end-to-end benchmarks: the same transport with no store, no JSON parsing and no
// protocol. Run as a child process, this file takes one role from argv; imported, it gives the parent the
// client side.
//   relay <port?>    a server: /node registers the echoing peer, /client frames are forwarded to it and its
//                    answers back (two hops, like coordinator → hub → node → hub → coordinator); /echo echoes
//                    (one hop). Reports { port }.
//   echo-node <url>  connects to the relay's /node and echoes every frame. Reports { ready }.
//   idle-server      holds connections; { broadcast } sends one frame to every client and reports how long
//                    until each has echoed it. Reports { port }.
//   idle-clients <url> <n>  opens n connections to an idle-server, each echoing. Reports { ready }.
import WebSocket, { WebSocketServer } from "ws";

const send = (m: unknown) => process.send!(m);

const relay = () => {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  let node: WebSocket | undefined;
  let client: WebSocket | undefined;
  wss.on("connection", (ws, req) => {
    if (req.url === "/node") {
      node = ws;
      ws.on("message", (d, bin) => client?.send(d, { binary: bin }));
    } else if (req.url === "/client") {
      client = ws;
      ws.on("message", (d, bin) => node?.send(d, { binary: bin }));
    } else ws.on("message", (d, bin) => ws.send(d, { binary: bin }));
  });
  wss.on("listening", () => send({ port: (wss.address() as { port: number }).port }));
};

const echoNode = (url: string) => {
  const ws = new WebSocket(url);
  ws.on("message", (d, bin) => ws.send(d, { binary: bin }));
  ws.on("open", () => send({ ready: true }));
};

const idleServer = () => {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  wss.on("connection", (ws) => ws.on("message", () => onEcho?.()));
  let onEcho: (() => void) | undefined;
  wss.on("listening", () => send({ port: (wss.address() as { port: number }).port }));
  process.on("message", (m: { broadcast?: boolean; clients?: boolean }) => {
    if (m.clients) send({ clients: wss.clients.size });
    if (!m.broadcast) return;
    const t0 = performance.now();
    let left = wss.clients.size;
    onEcho = () => {
      if (--left === 0) send({ broadcastMs: performance.now() - t0 });
    };
    for (const ws of wss.clients) ws.send(JSON.stringify({ m: "echo", b: { hello: "node" } }));
  });
};

const idleClients = async (url: string, n: number) => {
  const sockets: WebSocket[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(50, n) }, async () => {
      for (let i = next++; i < n; i = next++)
        await new Promise<void>((res, rej) => {
          const ws = new WebSocket(url);
          ws.on("message", (d, bin) => ws.send(d, { binary: bin }));
          ws.once("open", () => res());
          ws.once("error", rej);
          sockets.push(ws);
        });
    }),
  );
  send({ ready: sockets.length });
};

if (import.meta.main) {
  const [role, a, b] = process.argv.slice(2);
  if (role === "relay") relay();
  else if (role === "echo-node") echoNode(a!);
  else if (role === "idle-server") idleServer();
  else if (role === "idle-clients")
    idleClients(a!, Number(b)).catch((e: unknown) => send({ error: String(e) }));
  else throw new Error(`unknown role ${role}`);
}

// ---- parent side ----

/** A client that sends numbered frames and matches their echoes. */
export const wsClient = async (url: string) => {
  const ws = new WebSocket(url);
  await new Promise<void>((res, rej) => {
    ws.once("open", () => res());
    ws.once("error", rej);
  });
  const waiting = new Map<number, () => void>();
  ws.on("message", (d) => {
    const { i } = JSON.parse(String(d)) as { i: number };
    const w = waiting.get(i);
    waiting.delete(i);
    w?.();
  });
  let seq = 0;
  return {
    /** One round trip carrying `payload`. */
    roundTrip(payload: unknown): Promise<void> {
      const i = seq++;
      return new Promise((res) => {
        waiting.set(i, res);
        ws.send(JSON.stringify({ i, payload }));
      });
    },
    close: () => ws.terminate(),
  };
};
