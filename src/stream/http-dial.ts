import { CloseCode } from "../protocol/close-codes.ts";
import { describeError, FleetlinkError } from "../protocol/errors.ts";
import type { Frame, WireError } from "../protocol/frames.ts";
import { truncate } from "../protocol/limits.ts";
import { DEFAULT_POLL_WAIT_MS, NODE_HTTP_PREFIX } from "../protocol/node-http-schemas.ts";
import { NodeMethods } from "../protocol/wire.ts";
import type { Connector } from "./dialer.ts";
import type { Transport } from "./transport.ts";
import { DialRefused } from "./ws-dial.ts";

export interface HttpConnectorOptions {
  /** Headers of every request (the credential), read at every dial. */
  headers: () => Record<string, string>;
  /** How long each poll may be parked at the hub, in ms. (Default: 20000) */
  waitMs?: number;
  /** Longest wait for the answer to one request beyond its poll wait, in ms; then the session is given up. (Default: 30000) */
  timeoutMs?: number;
}

interface Posted {
  status: number;
  body: Record<string, unknown> | undefined;
}

const readJson = async (res: Response): Promise<Record<string, unknown> | undefined> => {
  try {
    const v = JSON.parse(await res.text());
    return typeof v === "object" && v !== null && !Array.isArray(v) ? v : undefined;
  } catch {
    return undefined;
  }
};

/** The hub's error body as a wire error the channel accepts, whatever the body was. */
const wireError = (p: Posted): WireError => {
  const e = p.body?.error as Partial<WireError> | undefined;
  return {
    code: typeof e?.code === "string" ? e.code : "FLEETLINK_E_HUB_UNAVAILABLE",
    message: truncate(typeof e?.message === "string" ? e.message : `hub answered ${p.status}`, 4096),
    ...(typeof e?.field === "string" ? { field: e.field } : {}),
  };
};

/**
 * Dials a hub over the HTTP node API (POST /v1/node/open): resolves with a Transport the Dialer and Channel use
 * as they use a WebSocket; rejects with DialRefused when the hub refuses the node (as the upgrade does), or
 * with STREAM_CLOSED when it does not answer.
 */
export const httpConnector =
  (o: HttpConnectorOptions): Connector =>
  async (hub) => {
    const base = `${hub.replace(/\/$/, "")}${NODE_HTTP_PREFIX}`;
    const timeoutMs = o.timeoutMs ?? 30_000;
    let res: Response;
    try {
      res = await fetch(`${base}/open`, {
        method: "POST",
        headers: { ...o.headers(), "content-type": "application/json" },
        body: "{}",
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      throw new FleetlinkError("STREAM_CLOSED", describeError(e), { cause: e });
    }
    const body = await readJson(res);
    if (!res.ok || typeof body?.session !== "string") {
      const e = wireError({ status: res.status, body });
      throw new DialRefused(res.status, body?.error ? e.code : "", truncate(e.message, 200));
    }
    return new HttpTransport(base, body.session, o.headers(), o.waitMs ?? DEFAULT_POLL_WAIT_MS, timeoutMs);
  };

/**
 * One HTTP node session as a Transport. A request frame the channel sends becomes `POST /v1/node/<m>` and its
 * answer a response frame; an instruction from a poll becomes a request frame (its id is the instruction's),
 * and the channel's answer to it is the acknowledgement the next poll carries. A 410 closes the transport with
 * the hub's close code, a network failure with `abnormal`. Every answer is a sign of life; a ping is a fresh
 * poll, which makes the hub answer the parked one.
 */
class HttpTransport implements Transport {
  private open = true;
  private readonly msg: ((f: string) => void)[] = [];
  private readonly closed: ((code: number, reason: string) => void)[] = [];
  private readonly alive: (() => void)[] = [];
  private readonly abort = new AbortController();
  private readonly acks = new Set<string>();
  /** The newest poll's number: only its answer starts the next poll (a superseded one's does not). */
  private polls = 0;
  private polling = false;
  private readonly base: string;
  private readonly session: string;
  private readonly headers: Record<string, string>;
  private readonly waitMs: number;
  private readonly timeoutMs: number;

  constructor(
    base: string,
    session: string,
    headers: Record<string, string>,
    waitMs: number,
    timeoutMs: number,
  ) {
    this.base = base;
    this.session = session;
    this.headers = { ...headers, "content-type": "application/json" };
    this.waitMs = waitMs;
    this.timeoutMs = timeoutMs;
  }

  get isOpen(): boolean {
    return this.open;
  }

  send(frame: string): void {
    if (!this.open) return;
    const f = JSON.parse(frame) as Frame;
    if (f.t === "req") void this.call(f.id, f.m, f.b);
    // The channel answered an instruction (accepted, or refused: either way the hub is done sending it).
    else if ((f.t === "res" || f.t === "err") && f.id !== undefined) this.acks.add(f.id);
  }

  close(code: number = CloseCode.normal, reason = ""): void {
    if (!this.open) return;
    this.end(code, reason);
    // Best effort: the hub gives the session's leases back now rather than when it notices the silence.
    if (code !== CloseCode.abnormal)
      fetch(`${this.base}/close`, {
        method: "POST",
        headers: this.headers,
        body: JSON.stringify({ session: this.session }),
        signal: AbortSignal.timeout(2000),
      }).then(
        (r) => r.body?.cancel(),
        () => {},
      );
  }

  terminate(): void {
    this.end(CloseCode.abnormal, "terminated");
  }

  onMessage(cb: (frame: string) => void): void {
    this.msg.push(cb);
  }

  onClose(cb: (code: number, reason: string) => void): void {
    this.closed.push(cb);
  }

  onAlive(cb: () => void): void {
    this.alive.push(cb);
  }

  /** A fresh poll: the hub answers the parked one at once, which proves the path in both directions. */
  ping(): void {
    if (this.polling) this.poll();
  }

  private async call(id: string, method: string, body: unknown): Promise<void> {
    const p = await this.post(method, { ...(body as object), session: this.session }, this.timeoutMs);
    if (!p) return;
    if (p.status !== 200) return this.emit({ t: "err", id, e: wireError(p) });
    this.emit({ t: "res", id, b: p.body });
    // Instructions come after hello, as on the stream.
    if (method === NodeMethods.hello && !this.polling) {
      this.polling = true;
      this.poll();
    }
  }

  private poll(): void {
    if (!this.open) return;
    const n = ++this.polls;
    const acks = [...this.acks];
    this.acks.clear();
    const body = { session: this.session, acks, waitMs: this.waitMs };
    void this.post("poll", body, this.waitMs + this.timeoutMs).then((p) => {
      if (!p) return;
      if (p.status === 200) {
        for (const ins of (p.body?.instructions ?? []) as { id: string }[])
          this.emit({ t: "req", id: ins.id, m: NodeMethods.instruction, b: ins });
        // After the channel's answers (microtasks), so this answer's acknowledgements ride in the next poll.
        if (n === this.polls) setImmediate(() => n === this.polls && this.poll());
        return;
      }
      for (const a of acks) this.acks.add(a);
      if (p.status === 429) {
        // Too many parked polls on the replica: come back a little later.
        if (n === this.polls) setTimeout(() => n === this.polls && this.poll(), 200 + Math.random() * 800);
        return;
      }
      const e = wireError(p);
      this.end(CloseCode.internalError, `poll refused: ${p.status} ${e.code}: ${e.message}`);
    });
  }

  /** Posts one request; null when the session is over (410, network failure, closed meanwhile). */
  private async post(path: string, body: object, timeoutMs: number): Promise<Posted | null> {
    try {
      const res = await fetch(`${this.base}/${path}`, {
        method: "POST",
        headers: this.headers,
        body: JSON.stringify(body),
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(timeoutMs)]),
      });
      const json = await readJson(res);
      if (!this.open) return null;
      for (const cb of this.alive) cb();
      // 410 is also an instruction's end (INSTRUCTION_ENDED, MESSAGE_EXPIRED): only SESSION_ENDED carries `close`.
      if (res.status === 410 && json?.close !== undefined) {
        const c = json?.close as { code?: unknown; reason?: unknown } | undefined;
        this.end(
          typeof c?.code === "number" ? c.code : CloseCode.goingAway,
          typeof c?.reason === "string" ? c.reason : "session ended",
        );
        return null;
      }
      return { status: res.status, body: json };
    } catch (e) {
      this.end(CloseCode.abnormal, describeError(e));
      return null;
    }
  }

  private emit(f: Frame): void {
    if (!this.open) return;
    const text = JSON.stringify(f);
    for (const cb of this.msg) cb(text);
  }

  private end(code: number, reason: string): void {
    if (!this.open) return;
    this.open = false;
    this.abort.abort();
    for (const cb of this.closed) cb(code, reason);
  }
}
