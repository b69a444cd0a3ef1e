import type WebSocket from "ws";
import type { Transport } from "./transport.ts";

/** Adapts a `ws` WebSocket (client or server side) to a Transport. */
export const wsTransport = (ws: WebSocket): Transport => ({
  send: (frame) => {
    if (ws.readyState === ws.OPEN) ws.send(frame);
  },
  close: (code = 1000, reason = "") => {
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
  },
  onMessage: (cb) => {
    ws.on("message", (data, isBinary) => cb(isBinary ? "" : data.toString()));
  },
  onClose: (cb) => {
    ws.on("close", (code, reason) => cb(code, reason.toString()));
  },
  get isOpen() {
    return ws.readyState === ws.OPEN;
  },
});
