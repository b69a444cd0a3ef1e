// bench:peers baseline: a raw `ws` two-hop relay, no store, no protocol (coordinator → relay process → worker →
// relay → coordinator, the hub's path minus everything the hub does). Unlike bench/ws-worker.ts's relay, this
// one holds any number of worker connections and forwards client frames to them round robin.
// Run as `node bench/peers-ws.ts relay`, this file is the relay process (reports { port }); imported by
// bench/peers-worker.ts it gives the worker side, and by bench/peers.ts the coordinator side.
import WebSocket, { WebSocketServer } from "ws";
import { ask, exited, forkWorker } from "./fleet-worker.ts";
import {
  PAYLOAD,
  peerSystem,
  pkgVersion,
  type System,
  startPeerWorker,
  type WorkerSide,
} from "./peers-common.ts";
import { wsClient } from "./ws-worker.ts";

const relay = () => {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  const nodes: WebSocket[] = [];
  let client: WebSocket | undefined;
  let rr = 0;
  wss.on("connection", (ws, req) => {
    ws.on("error", () => ws.terminate());
    if (req.url === "/node") {
      nodes.push(ws);
      ws.on("close", () => nodes.splice(nodes.indexOf(ws), 1));
      ws.on("message", (d, bin) => client?.send(d, { binary: bin }));
    } else {
      client = ws;
      ws.on("message", (d, bin) => {
        // A node whose close handshake has begun is skipped: its frame would be lost.
        for (let tries = 0; tries < nodes.length; tries++) {
          const n = nodes[rr++ % nodes.length]!;
          if (n.readyState === WebSocket.OPEN) return n.send(d, { binary: bin });
        }
      });
    }
  });
  wss.on("listening", () => process.send!({ port: (wss.address() as { port: number }).port }));
  process.on("disconnect", () => process.exit(0));
};

if (import.meta.main) relay();

// ---- worker side ----

export const wsWorkers = async (spec: { url: string }): Promise<WorkerSide> => {
  let open: WebSocket[] = [];
  const closeAll = async () => {
    await Promise.all(
      open.map(
        (ws) =>
          new Promise<void>((r) => {
            ws.once("close", () => r());
            ws.close();
          }),
      ),
    );
    open = [];
  };
  return {
    async setWorkers(k) {
      await closeAll();
      open = await Promise.all(
        Array.from(
          { length: k },
          () =>
            new Promise<WebSocket>((res, rej) => {
              const ws = new WebSocket(spec.url);
              ws.on("message", (d, bin) => ws.send(d, { binary: bin }));
              ws.once("open", () => res(ws));
              ws.once("error", rej);
            }),
        ),
      );
    },
    close: closeAll,
  };
};

// ---- coordinator side ----

export const wsSystem = async (): Promise<System> => {
  const relayProc = forkWorker(import.meta.filename, ["relay"]);
  const port = await ask<number>(relayProc, "port");
  const workers = await startPeerWorker("ws", { url: `ws://127.0.0.1:${port}/node` });
  const client = await wsClient(`ws://127.0.0.1:${port}/client`);
  return peerSystem({
    name: "raw-ws",
    durability: "none",
    durabilityNote:
      "raw ws two-hop relay: nothing stored anywhere; a frame in flight is lost with any process",
    version: `ws ${pkgVersion("ws")} (relay and workers: Node ${process.version})`,
    middle: () => [relayProc.pid!],
    workers,
    call: () => client.roundTrip(PAYLOAD),
    close: async () => {
      client.close();
      await workers.stop();
      relayProc.kill();
      await exited(relayProc);
    },
  });
};
