import http from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import { FleetlinkError } from "../protocol/errors.ts";
import { fromWireError, type WireError } from "../protocol/frames.ts";

/** Keep-alive connections of one blob client (idle ones do not hold the process open). */
export interface Agents {
  http: http.Agent;
  https: https.Agent;
}

export const newAgents = (): Agents => ({
  http: new http.Agent({ keepAlive: true }),
  https: new https.Agent({ keepAlive: true }),
});

export interface SendOptions {
  headers?: Record<string, string | number>;
  /** A JSON body (sent as JSON), raw bytes, or a stream of bytes. */
  body?: unknown;
  signal?: AbortSignal;
  /** A socket silent this long ends the request, in ms. */
  idleMs: number;
}

/** Largest JSON answer read, in bytes: blob answers are small. */
const MAX_JSON_BYTES = 1024 * 1024;

/**
 * One request over node:http(s), resolving with the response whose body the caller reads (streamed, never
 * buffered whole). A stream body is piped; the request fails if the socket is silent for `idleMs`.
 */
export const send = (
  agents: Agents,
  method: string,
  url: string,
  o: SendOptions,
): Promise<http.IncomingMessage> =>
  new Promise((resolve, reject) => {
    const u = new URL(url);
    const tls = u.protocol === "https:";
    const headers: Record<string, string | number> = { ...o.headers };
    let payload: Buffer | Readable | undefined;
    if (o.body instanceof Uint8Array) {
      payload = Buffer.from(o.body.buffer, o.body.byteOffset, o.body.byteLength);
      headers["content-length"] = payload.length;
    } else if (o.body && typeof (o.body as Readable).pipe === "function") {
      payload = o.body as Readable;
    } else if (o.body !== undefined) {
      payload = Buffer.from(JSON.stringify(o.body));
      headers["content-type"] = "application/json";
      headers["content-length"] = payload.length;
    }
    const req = (tls ? https : http).request(u, {
      method,
      headers,
      agent: tls ? agents.https : agents.http,
      signal: o.signal,
    });
    req.setTimeout(o.idleMs, () =>
      req.destroy(new FleetlinkError("HUB_UNAVAILABLE", `${u.host}: no answer in ${o.idleMs} ms`)),
    );
    const stream = payload && !Buffer.isBuffer(payload) ? payload : undefined;
    req.on("response", (res) => {
      const status = res.statusCode ?? 0;
      // A refusal of a request with a body (a PUT answered 409/400/413 before its body was read): stop sending
      // it and, once the answer is read, end the socket, so the rest of the body is neither sent on nor left
      // in a keep-alive socket that a next request would reuse.
      if ((status < 200 || status >= 300) && payload !== undefined) {
        if (stream) {
          stream.unpipe(req);
          stream.destroy();
        }
        res.once("end", () => req.destroy());
        res.once("close", () => req.destroy());
      }
      resolve(res);
    });
    req.on("error", reject);
    if (Buffer.isBuffer(payload)) req.end(payload);
    else if (stream) {
      stream.on("error", (e: Error) => req.destroy(e));
      req.on("close", () => stream.destroy());
      stream.pipe(req);
    } else req.end();
  });

/** The response's JSON body (bounded). */
export const readJson = async (res: http.IncomingMessage): Promise<unknown> => {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_JSON_BYTES) {
      res.destroy();
      throw new FleetlinkError("HUB_UNAVAILABLE", `answer larger than ${MAX_JSON_BYTES} bytes`);
    }
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new FleetlinkError(
      "HUB_UNAVAILABLE",
      `answer is not JSON (status ${res.statusCode}): ${text.slice(0, 200)}`,
    );
  }
};

/** The hub's error for a non-2xx answer (its JSON body read), as a FleetlinkError. */
export const answerError = async (res: http.IncomingMessage): Promise<FleetlinkError> => {
  const status = res.statusCode ?? 0;
  let body: unknown = null;
  try {
    body = await readJson(res);
  } catch {
    // A proxy's HTML error page: the status says enough.
  }
  const err = (body as { error?: WireError } | null)?.error;
  // A hub or proxy that timed the request out (a hub's 408 carries an INVALID_ARGUMENT body): the bytes it
  // made durable are kept, so the transfer goes on (a definite refusal would end it).
  if (status === 408)
    return new FleetlinkError("HUB_UNAVAILABLE", `status 408${err?.message ? `: ${err.message}` : ""}`);
  if (err && typeof err.code === "string") return fromWireError(err);
  if (status >= 500) return new FleetlinkError("HUB_UNAVAILABLE", `status ${status}`);
  return new FleetlinkError("INVALID_ARGUMENT", `unexpected status ${status}`);
};

/**
 * Worth retrying (possibly elsewhere) after a pause: the network failed, a hub or proxy was unavailable or
 * timed the request out (408, mapped by answerError), or asked us to slow down (429).
 */
export const transient = (e: unknown): boolean => {
  if (!(e instanceof FleetlinkError)) return !(e instanceof Error && e.name === "AbortError");
  return e.status >= 500 || e.status === 429;
};
