import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import { type WebSocket, WebSocketServer } from "ws";
import { CloseCode } from "../../protocol/close-codes.ts";
import { describeError, FleetlinkError, isFleetlinkError } from "../../protocol/errors.ts";
import { isId } from "../../protocol/ids.ts";
import { MAX_LOGGED_CHARS, truncate } from "../../protocol/limits.ts";
import type { NodeRecord } from "../../protocol/types.ts";
import type { Store } from "../../store/store.ts";
import type { Logger } from "../../stream/channel.ts";
import { Liveness, watchTransport } from "../../stream/liveness.ts";
import { wsTransport } from "../../stream/ws.ts";
import { type AccessContext, authenticate, authorize } from "../http/access.ts";
import { Admission, MAX_UPGRADING, RETRY_AFTER_S } from "../http/admission.ts";
import { bearer, hashCredential, parseNodeToken, sameSecret } from "../http/auth.ts";
import { bindCertIdentity, type ClientCertPolicy, verifiedClientCert } from "../http/client-certs.ts";
import { type RunTenants, runNotFound } from "../http/tenancy.ts";
import type { NodeStreams } from "./node-streams.ts";
import type { RunStreams } from "./run-streams.ts";

export interface StreamUpgradeOptions {
  store: Store;
  /** The hub's credentials: run streams need access "drive" (admin or coordinator) and a run of its tenant. */
  access: AccessContext;
  tenants: RunTenants;
  nodes: NodeStreams;
  runs: RunStreams;
  log: Logger;
  /** Largest frame accepted. */
  maxFrameBytes: number;
  /** Bytes queued for a stream that does not read before it is disconnected. (Default: 64 MiB) */
  maxBufferedBytes?: number;
  /** The hub's dead-peer rule (hubLiveness), shared with the HTTP node sessions. */
  liveness: Liveness;
  /** Mutual TLS: node streams need a verified client certificate, bound to the node as this says. */
  clientCerts?: ClientCertPolicy;
}

/**
 * Dead-peer detection, the one rule (stream/liveness.ts) on one timer for every socket and HTTP node session:
 * silent for about an interval → pinged, silent 1.25 intervals → dropped (closing its channel and releasing its
 * leases), so a dead peer is gone within 1.5 intervals. Anything heard counts (a frame, a pong, the peer's own
 * ping, a poll): node agents ping when they hear nothing and coordinators every 2 s, so an idle fleet costs the
 * hub no pings. `pingIntervalMs`: see HubOptions.pingIntervalMs. (Default: 10000)
 */
export const hubLiveness = (pingIntervalMs = 10_000): Liveness =>
  new Liveness({
    probeAfterMs: Math.floor(pingIntervalMs * 0.75),
    dropAfterMs: Math.floor(pingIntervalMs * 1.25),
    checkMs: Math.max(1, Math.floor(pingIntervalMs / 4)),
  });

/**
 * Checks a node's `Authorization: Bearer <nodeId>.<credential>` against the store, as the stream's upgrade and
 * the HTTP node API's open do: an unknown node or wrong credential is UNAUTHORIZED, an unregistered node
 * NODE_UNREGISTERED, one waiting for approval NODE_PENDING.
 */
export const authenticateNode = async (
  store: Store,
  authorization: string | string[] | undefined,
): Promise<{ node: NodeRecord; credentialHash: string }> => {
  const { nodeId, credential } = parseNodeToken(bearer(authorization));
  if (!isId(nodeId)) throw new FleetlinkError("UNAUTHORIZED", "unknown node or bad credential");
  // Only an unknown node is a bad credential: a store that cannot answer (STORE_UNAVAILABLE, 503) must not read
  // as UNAUTHORIZED, which an agent takes as final.
  const node = await store.getNode(nodeId).catch((e: unknown) => {
    if (isFleetlinkError(e, "NODE_NOT_FOUND")) return null;
    throw e;
  });
  const credentialHash = hashCredential(credential);
  if (!node?.credentialHash || !sameSecret(credentialHash, node.credentialHash))
    throw new FleetlinkError("UNAUTHORIZED", "unknown node or bad credential");
  if (node.status === "unregistered") throw new FleetlinkError("NODE_UNREGISTERED", "node is unregistered");
  if (!node.approved)
    throw new FleetlinkError("NODE_PENDING", "node is waiting for approval: fleetlink nodes approve <id>");
  return { node, credentialHash };
};

const REASONS: Record<number, string> = {
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  429: "Too Many Requests",
  503: "Service Unavailable",
};

/**
 * Open run streams of stored principals (flt_ tokens) are authenticated again this often, so a token revoked or
 * expired while its stream is open loses it (close 4001 revoked) within this, on every replica. The static
 * tokens cannot be revoked while the hub runs and are not rechecked.
 */
export const RECHECK_MS = 2000;

/** The open run streams of each stored principal, and one timer that rechecks them (one read per principal). */
class RunStreamRechecks {
  private readonly open = new Map<string, { authorization: string; sockets: Set<WebSocket> }>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly access: AccessContext;
  private readonly log: Logger;
  constructor(access: AccessContext, log: Logger) {
    this.access = access;
    this.log = log;
  }

  add(principalId: string, authorization: string, ws: WebSocket): void {
    if (!isId(principalId)) return; // a static token: nothing to recheck
    const e = this.open.get(principalId) ?? { authorization, sockets: new Set<WebSocket>() };
    this.open.set(principalId, e);
    e.sockets.add(ws);
    ws.once("close", () => {
      e.sockets.delete(ws);
      if (e.sockets.size === 0 && this.open.get(principalId) === e) this.open.delete(principalId);
    });
    if (!this.timer) {
      this.timer = setInterval(() => void this.tick(), RECHECK_MS);
      this.timer.unref();
    }
  }

  private async tick(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (const [id, e] of [...this.open]) {
        try {
          await authenticate(this.access, e.authorization, "");
        } catch (err) {
          // A store that does not answer revokes nothing: only a definite refusal ends the streams.
          if (!isFleetlinkError(err, "UNAUTHORIZED")) continue;
          this.log.warn(
            { principal: id, streams: e.sockets.size },
            "run streams of a revoked or expired token closed",
          );
          this.open.delete(id);
          for (const ws of e.sockets) ws.close(CloseCode.revoked, truncate(err.message, 120));
        }
      }
    } finally {
      this.running = false;
      if (this.open.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.open.clear();
  }
}

/** A refusal's body, as every error the hub answers: `{ error: { code, message, … } }`. */
export const errorBody = (e: FleetlinkError): string => JSON.stringify({ error: e.toJSON() });

/**
 * The hub's WebSocket entry: authenticates each upgrade (a node's credential, or an admin or coordinator token
 * for a run's reply stream, of the run's tenant), hands the socket to the node or run streams, and watches every socket by the one liveness
 * rule. A refusal is an HTTP answer with a fleetlink error body, which the dialing side reads.
 */
export const acceptStreams = (server: Server, o: StreamUpgradeOptions): { close(): void } => {
  const wss = new WebSocketServer({ noServer: true, maxPayload: o.maxFrameBytes });
  const keepalive = o.liveness;
  const upgrading = new Admission(MAX_UPGRADING, "stream upgrades");
  const rechecks = new RunStreamRechecks(o.access, o.log);
  const transport = (ws: WebSocket) => {
    const t = wsTransport(ws, {
      maxBufferedBytes: o.maxBufferedBytes,
      onError: (e) => o.log.warn({ err: truncate(e.message, MAX_LOGGED_CHARS) }, "stream error"),
    });
    const watched = watchTransport(keepalive, t);
    // Assigned, not spread: `isOpen` is a getter.
    return Object.assign(t, { expectEvery: (ms: number) => watched.expectEvery(ms) });
  };
  const reject = (socket: Duplex, e: FleetlinkError) => {
    if (!socket.writable) return socket.destroy();
    const body = errorBody(e);
    const reason = REASONS[e.status] ?? "Bad Request";
    const retry = e.status === 429 ? `Retry-After: ${RETRY_AFTER_S}\r\n` : "";
    socket.end(
      `HTTP/1.1 ${e.status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${retry}Connection: close\r\n\r\n${body}`,
    );
  };
  const upgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Until ws owns the socket, its errors (a reset mid-check, a write after the peer left) are ours to handle.
    socket.on("error", () => socket.destroy());
    const url = new URL(req.url ?? "/", "http://hub");
    try {
      if (url.pathname === "/v1/nodes/stream") {
        const cert = o.clientCerts && verifiedClientCert(req.socket);
        // Refused beyond the bound (RATE_LIMITED, Retry-After): the node's dialer backs off and comes again.
        const { node } = await upgrading.run(() => authenticateNode(o.store, req.headers.authorization));
        if (o.clientCerts) bindCertIdentity(o.clientCerts.identity, cert ?? "", node);
        if (socket.destroyed) return;
        wss.handleUpgrade(req, socket, head, (ws) => o.nodes.accept(node, transport(ws)));
        return;
      }
      const m = /^\/v1\/runs\/([^/]+)\/stream$/.exec(url.pathname);
      if (m) {
        // Bounded like node upgrades: a storm of run-stream upgrades cannot queue unbounded store reads.
        const { p, runId } = await upgrading.run(async () => {
          const p = await authorize(
            o.access,
            "drive",
            req.headers.authorization,
            req.socket.remoteAddress ?? "",
          );
          const runId = decodeURIComponent(m[1]!);
          if (!isId(runId)) throw runNotFound(truncate(runId, MAX_LOGGED_CHARS));
          // A run of another tenant is RUN_NOT_FOUND, as a run that does not exist.
          const tenant = await o.tenants.tenantOf(runId);
          if (p.tenant !== null && tenant !== p.tenant) throw runNotFound(runId);
          return { p, runId };
        });
        if (socket.destroyed) return;
        wss.handleUpgrade(req, socket, head, (ws) => {
          rechecks.add(p.id, String(req.headers.authorization ?? ""), ws);
          o.runs.accept(runId, transport(ws));
        });
        return;
      }
      reject(
        socket,
        new FleetlinkError("INVALID_ARGUMENT", `no stream at ${truncate(url.pathname, MAX_LOGGED_CHARS)}`, {
          field: "path",
        }),
      );
    } catch (e) {
      reject(socket, isFleetlinkError(e) ? e : new FleetlinkError("STORE_UNAVAILABLE", describeError(e)));
    }
  };
  server.on("upgrade", (req, socket, head) => {
    upgrade(req, socket, head).catch(() => socket.destroy());
  });
  return {
    close() {
      rechecks.close();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    },
  };
};
