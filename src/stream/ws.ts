import type { Writable } from "node:stream";
import type WebSocket from "ws";
import { CloseCode } from "../protocol/close-codes.ts";
import { corkTurn } from "./cork.ts";
import type { Transport } from "./transport.ts";

export interface WsTransportOptions {
  /**
   * Bytes queued for a peer that is not reading before it is disconnected as a slow consumer, like NATS's
   * `max_pending`. (Default: 64 MiB)
   */
  maxBufferedBytes?: number;
  /**
   * Every socket error lands here: protocol violations (ws has already closed the socket with 1002, 1007 or
   * 1009), resets, write failures. A socket error ends that connection only, never the process.
   */
  onError?: (e: Error) => void;
}

/** How long a peer closed with CloseCode.policy or tooBig has to complete the closing handshake, in ms. */
const RULE_BREAKER_GRACE_MS = 1000;

/** Adapts a `ws` WebSocket (client or server side) to a Transport; the transport owns the socket's errors. */
export const wsTransport = (ws: WebSocket, o: WsTransportOptions = {}): Transport => {
  const maxBuffered = o.maxBufferedBytes ?? 64 * 1024 * 1024;
  ws.on("error", (e) => o.onError?.(e));
  let slow = false;
  // ws keeps the underlying socket private; it is set once the connection is open, which send checks first.
  const socket = () => (ws as unknown as { _socket?: Writable })._socket;
  return {
    coalesces: true,
    send: (frame) => {
      if (ws.readyState !== ws.OPEN || slow) return;
      if (ws.bufferedAmount + frame.length > maxBuffered) {
        // The close frame queues behind the unsent bytes, so a peer that does not read may never see it:
        // give it a second, then cut the connection.
        slow = true;
        ws.close(CloseCode.slowConsumer, `slow consumer: ${ws.bufferedAmount} bytes unsent`);
        setTimeout(() => ws.terminate(), 1000).unref();
        return;
      }
      corkTurn(socket());
      ws.send(frame);
    },
    close: (code: number = CloseCode.normal, reason = "") => {
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
      // A peer closed for breaking the rules may not read (its close frame waits behind what it did not read)
      // nor answer the close: it gets a second, not ws's 30 s, before the connection is cut.
      if (code === CloseCode.policy || code === CloseCode.tooBig)
        setTimeout(() => ws.terminate(), RULE_BREAKER_GRACE_MS).unref();
    },
    onMessage: (cb) => {
      ws.on("message", (data, isBinary) => cb(isBinary ? "" : data.toString()));
    },
    onClose: (cb) => {
      ws.on("close", (code, reason) => cb(code, reason.toString()));
    },
    ping: () => {
      if (ws.readyState !== ws.OPEN) return;
      try {
        corkTurn(socket());
        ws.ping();
      } catch {
        ws.terminate();
      }
    },
    onAlive: (cb) => {
      // Frames too, without decoding them (onMessage decodes per listener: a cost on every call).
      ws.on("message", () => cb());
      ws.on("pong", () => cb());
      ws.on("ping", () => cb());
    },
    terminate: () => ws.terminate(),
    get isOpen() {
      return ws.readyState === ws.OPEN && !slow;
    },
  };
};
