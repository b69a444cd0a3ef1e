import WebSocket from "ws";
import { describeError, FleetlinkError } from "../protocol/errors.ts";
import { truncate } from "../protocol/limits.ts";
import { type ClientTls, clientTlsOptions } from "./client-tls.ts";
import type { Connector } from "./dialer.ts";
import { wsTransport } from "./ws.ts";

/**
 * The hub answered the WebSocket upgrade with an HTTP error instead of a stream: it refused this client
 * (pending approval, unknown credential, unregistered node…). `code` is the fleetlink error code, if any.
 */
export class DialRefused extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  /** The input the hub found at fault (`clientCertificate`: the TLS client certificate), if it named one. */
  readonly field: string | undefined;
  constructor(status: number, code: string, detail: string, field?: string) {
    super(`hub answered ${status}${code ? ` ${code}: ${detail}` : ""}`);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.field = field;
  }
}

export interface WsConnectorOptions {
  /** The stream's URL on a hub (given as http:// or https://). */
  url: (hub: string) => string;
  /** Headers of the upgrade request (the credential), read at every dial. */
  headers: () => Record<string, string>;
  /** Time the hub has to answer the upgrade, in ms. */
  handshakeTimeoutMs: number;
  /** Client certificate and hub CA for wss:// hubs. (Default: none, the system roots) */
  tls?: ClientTls;
}

/**
 * Dials a hub over WebSocket: resolves with the open transport; rejects with DialRefused when the hub answers
 * with an error (its body read for the fleetlink code), or with the network error when it does not answer.
 */
export const wsConnector =
  (o: WsConnectorOptions): Connector =>
  (hub) =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(o.url(hub).replace(/^http/, "ws"), {
        headers: o.headers(),
        handshakeTimeout: o.handshakeTimeoutMs,
        ...clientTlsOptions(o.tls),
      });
      let settled = false;
      const fail = (e: Error) => {
        if (settled) return;
        settled = true;
        ws.terminate();
        reject(e);
      };
      ws.on("error", (e) => fail(new FleetlinkError("STREAM_CLOSED", describeError(e), { cause: e })));
      ws.on("close", (code) =>
        fail(new FleetlinkError("STREAM_CLOSED", `closed (${code}) before it opened`)),
      );
      ws.on("unexpected-response", (_req, res) => {
        // The refusal's body says why (pending approval, unregistered, bad credential); read a little of it.
        let body = "";
        res.on("data", (d: Buffer) => {
          if (body.length < 4096) body += d.toString();
        });
        res.on("error", () => {});
        const done = () => {
          let code = "";
          let message = "";
          let field: string | undefined;
          try {
            ({ code, message, field } = (
              JSON.parse(body) as { error: { code: string; message: string; field?: string } }
            ).error);
          } catch {
            // not a fleetlink body
          }
          const f = typeof field === "string" ? field : undefined;
          fail(new DialRefused(res.statusCode ?? 0, code ?? "", truncate(message ?? "", 200), f));
        };
        // "end" and "close" both come; `fail` settles once.
        res.on("end", done);
        res.on("close", done);
      });
      ws.on("open", () => {
        if (settled) return;
        settled = true;
        resolve(wsTransport(ws));
      });
    });
