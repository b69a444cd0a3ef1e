import http from "node:http";
import https from "node:https";
import { describeError, FleetlinkError } from "../protocol/errors.ts";
import { fromWireError, type WireError } from "../protocol/frames.ts";
import { abortError } from "../stream/pending.ts";
import { type BackoffPolicy, backoffDelay } from "../util/backoff.ts";
import { DeadlineExceededError } from "./errors.ts";

export interface HubClientOptions {
  /**
   * How long one HTTP attempt may take, body included, before its replica counts as unreachable and the
   * next one is tried (idempotent requests only). (Default: 5000)
   */
  requestTimeoutMs?: number;
}

export interface RequestOptions {
  /**
   * After a network failure, a timeout or an unavailable store, try again on the next replica. Only for
   * idempotent requests. (Default: true)
   */
  retry?: boolean;
  /** Ends the request, retries included, with CANCELLED. */
  signal?: AbortSignal;
  /** Epoch ms by which the request, retries included, must be done. (Default: none) */
  deadline?: number;
}

/**
 * Learns of a replica that could not be reached, never of an error it answered. `certain`: refused, reset,
 * or silent for a whole requestTimeoutMs; otherwise only an attempt cut short by its caller's deadline timed
 * out, which a healthy but slower replica can do too.
 */
export type UnreachableListener = (hub: string, err: FleetlinkError, certain: boolean) => void;

type Attempt =
  | { kind: "answer"; status: number; json: unknown }
  | { kind: "unreachable"; err: FleetlinkError; why: "timeout" | "cut short" | "network" };

/** JSON over HTTP to any of several hub replicas: a replica that cannot be reached is skipped, in turn. */
export class HubClient {
  private index = 0;
  readonly hubs: string[];
  /** See HubClientOptions.requestTimeoutMs. */
  readonly requestTimeoutMs: number;
  private readonly token: string;
  private readonly unreachable = new Set<UnreachableListener>();
  /** Attempts of retryable requests in flight, by replica: cut short when that replica is found dead. */
  private readonly inflight = new Map<string, Set<AbortController>>();
  private active = 0;
  private readonly agents = {
    http: new http.Agent({ keepAlive: true }),
    https: new https.Agent({ keepAlive: true }),
  };

  constructor(hubs: string[], token: string, opts: HubClientOptions = {}) {
    if (hubs.length === 0)
      throw new FleetlinkError("INVALID_ARGUMENT", "hub: at least one hub URL", { field: "hub" });
    this.hubs = hubs.map((h) => h.replace(/\/$/, ""));
    this.token = token;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 5000;
  }

  get current(): string {
    return this.hubs[this.index % this.hubs.length]!;
  }

  get authHeader(): string {
    return `Bearer ${this.token}`;
  }

  /**
   * Moves on to the next replica (after a failure). With `from`, only if the current replica is still that
   * one: two failures seen on the same replica (an HTTP request and the run stream) move on once, not back.
   */
  rotate(from?: string): void {
    if (from !== undefined && from !== this.current) return;
    this.index++;
  }

  /** Calls `cb` whenever a replica cannot be reached; returns the function that unsubscribes it. */
  onUnreachable(cb: UnreachableListener): () => void {
    this.unreachable.add(cb);
    return () => this.unreachable.delete(cb);
  }

  /**
   * A replica found dead (a request timed out or was refused, a run stream stopped answering pings): moves
   * past it, and cuts short the retryable requests still waiting on it, which go on to the next replica.
   */
  reportUnreachable(hub: string, err: FleetlinkError): void {
    this.rotate(hub);
    for (const ac of this.inflight.get(hub) ?? []) ac.abort(err);
    for (const cb of this.unreachable) cb(hub, err, true);
  }

  /**
   * Sends one request. Network failures and timeouts move to the next replica and retry, so only idempotent
   * requests may pass `retry: true` (fleetlink's pushes are: the coordinator chooses instruction ids).
   * A replica that cannot be reached fails as HUB_UNAVAILABLE naming its URL (STORE_UNAVAILABLE is kept for
   * the hub's own 503s); a passed `deadline` as DeadlineExceededError; an aborted `signal` as CANCELLED.
   */
  async request<T>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<T> {
    const retry = opts.retry !== false;
    const tries = retry ? this.hubs.length * 2 : 1;
    const deadline = opts.deadline ?? Number.POSITIVE_INFINITY;
    let last: FleetlinkError | undefined;
    let lastCutByDeadline = false;
    for (let i = 0; i < tries; i++) {
      if (opts.signal?.aborted) throw abortError(opts.signal);
      const remaining = deadline - Date.now();
      if (remaining <= 0)
        throw new DeadlineExceededError(
          `${method} ${path}: deadline passed${last ? ` (${last.message})` : ""}`,
          last,
        );
      // A silent replica must not use up the whole deadline: the first round shares what remains between
      // the replicas not tried yet, so the last of them still gets its turn.
      const share = retry && i < this.hubs.length ? remaining / (this.hubs.length - i) : remaining;
      const budget = Math.min(this.requestTimeoutMs, Math.max(share, Math.min(remaining, 250)));
      const hub = this.current;
      const r = await this.attempt(hub, method, path, body, budget, opts.signal, retry);
      if (r.kind === "unreachable") {
        last = r.err;
        lastCutByDeadline = r.why === "timeout" && budget >= remaining;
        this.rotate(hub);
        // Cut short: whoever found the replica dead has reported it already. A timeout shorter than
        // requestTimeoutMs proves nothing against the replica (it may have been 1 ms): a suspicion only, or a
        // burst of tight deadlines would cut short every request a healthy replica is serving.
        if (r.why === "network" || (r.why === "timeout" && budget >= this.requestTimeoutMs))
          this.reportUnreachable(hub, r.err);
        else if (r.why === "timeout") for (const cb of this.unreachable) cb(hub, r.err, false);
        // A refusal comes back at once: pause a little before the next try; a timeout has waited already.
        const pause = Math.min(backoffDelay(REFUSED_RETRY, i), deadline - Date.now());
        if (i + 1 < tries && pause > 0 && r.why === "network")
          await new Promise((res) => setTimeout(res, pause));
        continue;
      }
      lastCutByDeadline = false;
      if (r.status >= 200 && r.status < 300) return r.json as T;
      // Only a fleetlink error body is trusted as one; anything else (a proxy's page…) is a status error,
      // and a 5xx of that kind means the hub behind it could not be reached.
      const wire = (r.json as { error?: WireError } | null)?.error;
      const fleetlink = wire && typeof wire === "object" && typeof wire.code === "string";
      const err = fleetlink
        ? fromWireError(wire)
        : new FleetlinkError(
            r.status >= 500 ? "HUB_UNAVAILABLE" : "INVALID_ARGUMENT",
            `HTTP ${r.status} from ${hub}${path}`,
          );
      const again = err.code === "FLEETLINK_E_STORE_UNAVAILABLE" || (!fleetlink && r.status >= 500);
      if (r.status >= 500 && again && i + 1 < tries) {
        last = err;
        this.rotate(hub);
        continue;
      }
      throw err;
    }
    if (lastCutByDeadline || Date.now() >= deadline)
      throw new DeadlineExceededError(`${method} ${path}: deadline passed (${last?.message})`, last);
    throw last;
  }

  /**
   * Ends every connection this client holds (its keep-alive pool), after letting requests in flight (a
   * withdraw sent as a call ended) finish for up to `graceMs`; those still running then fail.
   */
  async close(graceMs = 1000): Promise<void> {
    const until = Date.now() + graceMs;
    while (this.active > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  /**
   * One HTTP exchange on this client's own pool. Not fetch: its global pool keeps sockets that an aborted
   * request connected but never used, which a server shutting down then waits for; these sockets are ours
   * to end (`close`), and an aborted request takes its socket with it.
   */
  private async send(
    url: string,
    method: string,
    body: unknown,
    signal: AbortSignal,
  ): Promise<{ status: number; text: string }> {
    this.active++;
    try {
      return await this.exchange(url, method, body, signal);
    } finally {
      this.active--;
    }
  }

  private exchange(
    url: string,
    method: string,
    body: unknown,
    signal: AbortSignal,
  ): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body);
      const target = new URL(url);
      const secure = target.protocol === "https:";
      const req = (secure ? https : http).request(target, {
        method,
        agent: secure ? this.agents.https : this.agents.http,
        signal,
        headers: {
          authorization: this.authHeader,
          ...(data === undefined
            ? { "content-length": 0 }
            : { "content-type": "application/json", "content-length": Buffer.byteLength(data) }),
        },
      });
      req.on("error", reject);
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("close", () => {
          if (!res.complete) reject(new Error("connection closed before the response was complete"));
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
        );
      });
      req.end(data);
    });
  }

  private async attempt(
    hub: string,
    method: string,
    path: string,
    body: unknown,
    budgetMs: number,
    signal: AbortSignal | undefined,
    retry: boolean,
  ): Promise<Attempt> {
    const ac = new AbortController();
    const onAbort = () => ac.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(() => ac.abort(TIMED_OUT), budgetMs);
    const mine = retry ? (this.inflight.get(hub) ?? new Set<AbortController>()) : undefined;
    if (mine) {
      mine.add(ac);
      this.inflight.set(hub, mine);
    }
    try {
      const res = await this.send(`${hub}${path}`, method, body, ac.signal);
      let json: unknown = {};
      try {
        json = res.text ? JSON.parse(res.text) : {};
      } catch {
        // Not JSON (a proxy's page): judged by its status alone.
      }
      return { kind: "answer", status: res.status, json };
    } catch (e) {
      if (signal?.aborted) throw abortError(signal);
      const reason: unknown = ac.signal.aborted ? ac.signal.reason : undefined;
      const why = reason === undefined ? "network" : reason === TIMED_OUT ? "timeout" : "cut short";
      const msg =
        why === "timeout"
          ? `hub ${hub} did not answer ${method} ${path} within ${Math.round(budgetMs)} ms`
          : why === "cut short"
            ? `hub ${hub}: ${method} ${path} cut short: ${describeError(reason)}`
            : `hub ${hub} unreachable (${method} ${path}): ${networkCause(e)}`;
      const cause = why === "timeout" ? e : (reason ?? e);
      return { kind: "unreachable", err: new FleetlinkError("HUB_UNAVAILABLE", msg, { cause }), why };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      if (mine) {
        mine.delete(ac);
        if (mine.size === 0 && this.inflight.get(hub) === mine) this.inflight.delete(hub);
      }
    }
  }
}

const TIMED_OUT = "request timed out";
/** Pause before the next replica after a refused connection (a timeout has waited already). */
const REFUSED_RETRY: BackoffPolicy = { initialMs: 50, maxMs: 400, jitter: 0.5 };

/** Names a socket failure by its code (ECONNREFUSED, ECONNRESET…) when it has one. */
const networkCause = (e: unknown): string => {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && !describeError(e).includes(code)
    ? `${code} (${describeError(e)})`
    : describeError(e);
};
