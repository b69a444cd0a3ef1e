import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { dirname } from "node:path";
import { describeError, ErrorCodes, FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import { type ClientTls, clientTlsOptions } from "../stream/client-tls.ts";
import { type BackoffPolicy, backoffDelay } from "../util/backoff.ts";
import type { AgentStatus } from "./status.ts";

export interface NodeIdentity {
  nodeId: string;
  credential: string;
  /**
   * The name the node enrolled with. An agent given another name refuses to start with this identity (files
   * written before names were kept have none; the hub's hello answer tells then).
   */
  name?: string;
}

export interface EnrollOptions {
  hubs: readonly string[];
  name: string;
  enrollToken: string;
  heartbeatIntervalMs: number;
  /** Retry schedule while no hub answers. */
  retry: BackoffPolicy;
  /** Checked before every attempt: enrolling ends (STREAM_CLOSED) once it is true. */
  stopping: () => boolean;
  /** Each failed attempt, as the agent's status. */
  onRetry: (s: Extract<AgentStatus, { state: "enrolling" }>, error: string) => void;
  /** Client certificate and hub CA for https:// hubs (a hub with --client-ca requires the certificate). */
  tls?: ClientTls;
}

/**
 * POSTs JSON and reads a small JSON answer, over node:http(s) rather than fetch, which cannot present a
 * client certificate without a separate dispatcher package.
 */
const postJson = (
  url: string,
  headers: Record<string, string>,
  body: unknown,
  tls: ClientTls | undefined,
  timeoutMs: number,
): Promise<{ status: number; body: unknown }> =>
  new Promise((resolve, reject) => {
    const u = new URL(url);
    const data = JSON.stringify(body);
    const req = (u.protocol === "https:" ? https : http).request(u, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(data) },
      signal: AbortSignal.timeout(timeoutMs),
      // A connection of its own: a pooled one (or a resumed TLS session) of the global agent may have been
      // opened by other code of this process without the client certificate. Enrolling happens once.
      agent: false,
      ...(u.protocol === "https:" ? clientTlsOptions(tls) : {}),
    });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        if (text.length < 64 * 1024) text += d;
      });
      res.on("error", reject);
      res.on("end", () => {
        let json: unknown = {};
        try {
          json = JSON.parse(text);
        } catch {
          // not a fleetlink answer: the status says enough
        }
        resolve({ status: res.statusCode ?? 0, body: json });
      });
    });
    req.on("error", reject);
    req.end(data);
  });

/**
 * Enrolls, retrying with backoff across replicas while no hub answers; a definite refusal (wrong token, name
 * taken, …) ends it with the hub's reason.
 */
export const enroll = async (o: EnrollOptions): Promise<NodeIdentity> => {
  for (let attempt = 0; ; attempt++) {
    if (o.stopping()) throw new FleetlinkError("STREAM_CLOSED", "agent stopped while enrolling");
    const hub = o.hubs[attempt % o.hubs.length]!;
    let error: string;
    try {
      const res = await postJson(
        `${hub}/v1/nodes/enroll`,
        { authorization: `Bearer ${o.enrollToken}` },
        { name: o.name, heartbeatIntervalMs: o.heartbeatIntervalMs },
        o.tls,
        10_000,
      );
      const body = (res.body ?? {}) as {
        node?: { id: string; name?: string };
        credential?: string;
        error?: { code: string; message: string };
      };
      if (res.status >= 200 && res.status < 300 && body.node && body.credential)
        return { nodeId: body.node.id, credential: body.credential, name: body.node.name ?? o.name };
      const code = body.error?.code ?? "";
      error = `enrollment refused by ${hub}: HTTP ${res.status}${code ? ` ${code}` : ""}: ${body.error?.message ?? ""}`;
      // Refused for good: retrying cannot help (a rate limit or a hub-side failure can, after a pause).
      if (res.status >= 400 && res.status < 500 && res.status !== 429 && res.status !== 408) {
        const kind = code.startsWith("FLEETLINK_E_") ? code.slice(12) : "UNAUTHORIZED";
        throw new FleetlinkError(kind in ErrorCodes ? (kind as "UNAUTHORIZED") : "UNAUTHORIZED", error);
      }
    } catch (e) {
      if (isFleetlinkError(e)) throw e;
      const code = (e as { code?: string }).code;
      const why = describeError(e);
      error = `hub ${hub} unreachable for enrollment: ${why}${code && !why.includes(code) ? ` (${code})` : ""}`;
    }
    o.onRetry({ state: "enrolling", hub, attempt, error }, error);
    // A timer that keeps the process alive: a node waiting for its hub must not exit.
    await new Promise((r) => setTimeout(r, backoffDelay(o.retry, attempt)));
  }
};

/** The identity kept in this file, if it holds one. */
export const loadIdentity = (file: string): NodeIdentity | undefined => {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as NodeIdentity;
  } catch {
    return undefined; // no identity yet: enroll
  }
};

/** Keeps the identity in this file, readable by its owner only (it holds the credential). */
export const saveIdentity = (file: string, identity: NodeIdentity): void => {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(identity), { mode: 0o600 });
  chmodSync(file, 0o600); // `mode` applies only when the file is created
};
