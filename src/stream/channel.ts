import { CloseCode } from "../protocol/close-codes.ts";
import { describeError, FleetlinkError, invalid, isFleetlinkError } from "../protocol/errors.ts";
import { type Frame, fromWireError, MAX_FRAME_BYTES, parseFrame, toWireError } from "../protocol/frames.ts";
import { newId } from "../protocol/ids.ts";
import { MAX_LOGGED_CHARS, truncate } from "../protocol/limits.ts";
import { PendingCalls } from "./pending.ts";
import type { Transport } from "./transport.ts";

export type RequestHandler = (method: string, body: unknown, channel: Channel) => unknown | Promise<unknown>;
export type EventHandler = (method: string, body: unknown, channel: Channel) => void;

export interface Logger {
  debug(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}
export const silentLogger: Logger = { debug() {}, warn() {} };

export interface ChannelOptions {
  onRequest?: RequestHandler;
  onEvent?: EventHandler;
  /** Malformed frames tolerated before the peer is disconnected. (Default: 5) */
  maxGarbage?: number;
  /**
   * Requests of the peer refused as its own fault (INVALID_ARGUMENT, PAYLOAD_TOO_LARGE: an unknown method, a
   * malformed body) tolerated within `windowMs` before the stream is closed with CloseCode.policy: a peer that
   * keeps sending what can only be refused is a broken or hostile one, and each refusal costs an answer the
   * peer may never read. (Default: 100 within 10000 ms)
   */
  maxRefused?: { count: number; windowMs: number };
  /** Largest frame accepted, in bytes. (Default: 8 MiB) */
  maxFrameBytes?: number;
  log?: Logger;
  /**
   * Successful answers to these methods wait for the next frame this channel sends, at most `maxDelayMs`, and
   * leave with it in one write, when the transport coalesces the frames of a callback (a corked WebSocket).
   * For answers the peer does not wait on to go on (a reply's acknowledgement, a push's receipt whose replies
   * the peer already waits for): a sequential call then costs the hub two writes instead of four, and each
   * peer one wake-up less. Answers with errors are never held. (Default: none)
   */
  deferAnswers?: { methods: readonly string[]; maxDelayMs: number };
}

/**
 * One stream to one peer: calls in both directions over a single transport, so a hub can call a node over
 * the connection the node dialled. Each channel has an identity (`id`); code that tracks "the current
 * stream of node X" compares channels by identity, never by node id alone.
 */
export class Channel {
  readonly id = newId();
  private readonly pending = new PendingCalls<unknown>();
  private readonly opts: Required<Omit<ChannelOptions, "onRequest" | "onEvent" | "deferAnswers">> &
    ChannelOptions;
  private garbage = 0;
  /** Refusals (see ChannelOptions.maxRefused) in the window that began at `refusedSince`. */
  private refused = 0;
  private refusedSince = 0;
  private closeListeners: ((reason: string, code: number) => void)[] = [];
  private closedReason: string | null = null;
  /** The close code (CloseCode), once closed: what the peer asked us to do, or what we told it. */
  private closedCode: number = CloseCode.abnormal;
  readonly closed: Promise<string>;
  private readonly transport: Transport;
  /** Methods whose answers may be held (see ChannelOptions.deferAnswers); empty unless the transport coalesces. */
  private readonly deferrable: ReadonlySet<string>;
  /** Held answers, encoded, oldest first; sent before the next frame or when `deferTimer` fires. */
  private deferred: string[] = [];
  private deferTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(transport: Transport, opts: ChannelOptions = {}) {
    this.transport = transport;
    this.opts = {
      maxGarbage: 5,
      maxRefused: DEFAULT_MAX_REFUSED,
      maxFrameBytes: MAX_FRAME_BYTES,
      log: silentLogger,
      ...opts,
    };
    this.deferrable = new Set(transport.coalesces ? (opts.deferAnswers?.methods ?? []) : []);
    this.closed = new Promise((res) => this.closeListeners.push((r) => res(r)));
    transport.onMessage((f) => this.receive(f));
    transport.onClose((code, reason) => this.finish(`closed (${code}${reason ? `: ${reason}` : ""})`, code));
    if (!transport.isOpen) this.finish("closed before use", CloseCode.abnormal);
  }

  get isOpen(): boolean {
    return this.closedReason === null && this.transport.isOpen;
  }

  /** Calls the peer; resolves with its answer, rejects with its typed error, on timeout, abort or close. */
  request(
    method: string,
    body?: unknown,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<unknown> {
    if (!this.isOpen)
      return Promise.reject(new FleetlinkError("STREAM_CLOSED", `stream ${this.id} is ${this.closedReason}`));
    const id = newId();
    const p = this.pending.add(id, opts);
    try {
      this.write({ t: "req", id, m: method, b: body });
    } catch (e) {
      this.pending.fail(id, unencodable(e));
    }
    return p;
  }

  /** One-way message. Throws INVALID_ARGUMENT if the body cannot be encoded as JSON. */
  emit(method: string, body?: unknown): void {
    try {
      this.write({ t: "evt", m: method, b: body });
    } catch (e) {
      throw unencodable(e);
    }
  }

  close(code: number = CloseCode.normal, reason = ""): void {
    if (this.isOpen) this.sendDeferred();
    this.transport.close(code, reason);
    this.finish(`closed (${code}${reason ? `: ${reason}` : ""})`, code);
  }

  /** The close code once closed (policies branch on it, never on the reason text); null while open. */
  get closeCode(): number | null {
    return this.closedReason === null ? null : this.closedCode;
  }

  /** `reason` is for people (logs, status); `code` (a CloseCode) is what code decides by. */
  onClose(cb: (reason: string, code: number) => void): void {
    if (this.closedReason !== null) queueMicrotask(() => cb(this.closedReason!, this.closedCode));
    else this.closeListeners.push(cb);
  }

  private write(f: Frame): void {
    if (!this.isOpen) return;
    const text = JSON.stringify(f);
    if (this.deferred.length > 0) this.sendDeferred();
    this.transport.send(text);
  }

  /** Holds an answer until the next frame, or `maxDelayMs`. Throws (nothing held) if it cannot be encoded. */
  private defer(f: Frame): void {
    this.deferred.push(JSON.stringify(f));
    this.deferTimer ??= setTimeout(() => this.sendDeferred(), this.opts.deferAnswers!.maxDelayMs);
  }

  private sendDeferred(): void {
    clearTimeout(this.deferTimer);
    this.deferTimer = undefined;
    const held = this.deferred;
    this.deferred = [];
    if (this.isOpen) for (const text of held) this.transport.send(text);
  }

  private finish(reason: string, code: number): void {
    if (this.closedReason !== null) return;
    // Held answers die with the stream, as answers in flight do: the peer asks again (replies are idempotent).
    clearTimeout(this.deferTimer);
    this.deferTimer = undefined;
    this.deferred = [];
    this.closedReason = reason;
    this.closedCode = code;
    this.pending.closeAll(new FleetlinkError("STREAM_CLOSED", `stream ${reason}`));
    for (const cb of this.closeListeners) cb(reason, code);
    this.closeListeners = [];
  }

  private receive(text: string): void {
    // Frames already read when the stream closed (a flood arrives in one read) are not served.
    if (this.closedReason !== null) return;
    let f: Frame;
    try {
      if (text.length > this.opts.maxFrameBytes)
        throw new FleetlinkError(
          "PAYLOAD_TOO_LARGE",
          `frame of ${text.length} bytes exceeds ${this.opts.maxFrameBytes}`,
          {
            field: "frame",
          },
        );
      f = parseFrame(text);
    } catch (e) {
      this.garbage++;
      this.opts.log.warn(
        { channel: this.id, err: truncate((e as Error).message, MAX_LOGGED_CHARS) },
        "malformed frame",
      );
      this.write({ t: "err", e: toWireError(e) });
      if (this.garbage >= this.opts.maxGarbage) this.close(CloseCode.policy, "too many malformed frames");
      return;
    }
    switch (f.t) {
      case "req":
        void this.serve(f.id, f.m, f.b);
        return;
      case "res":
        // An answer nobody waits for (its call timed out or was cancelled) is dropped, never treated as a request.
        if (!this.pending.deliver(f.id, f.b))
          this.opts.log.debug({ channel: this.id, id: f.id }, "unmatched response");
        return;
      case "err":
        if (f.id === undefined)
          this.opts.log.warn(
            {
              channel: this.id,
              code: truncate(f.e.code, MAX_LOGGED_CHARS),
              err: truncate(f.e.message, MAX_LOGGED_CHARS),
            },
            "peer reported an error",
          );
        else if (!this.pending.fail(f.id, fromWireError(f.e)))
          this.opts.log.debug({ channel: this.id, id: f.id }, "unmatched error response");
        return;
      case "evt":
        this.opts.onEvent?.(f.m, f.b, this);
        return;
    }
  }

  /** Counts a refusal of the peer's request; past the budget of the window, closes the stream (policy). */
  private refuse(): void {
    const now = Date.now();
    if (now - this.refusedSince >= this.opts.maxRefused.windowMs) {
      this.refusedSince = now;
      this.refused = 0;
    }
    if (++this.refused > this.opts.maxRefused.count && this.isOpen) {
      this.opts.log.warn({ channel: this.id, refused: this.refused }, "too many refused requests: closing");
      this.close(
        CloseCode.policy,
        `more than ${this.opts.maxRefused.count} requests refused within ${this.opts.maxRefused.windowMs} ms`,
      );
    }
  }

  private async serve(id: string, method: string, body: unknown): Promise<void> {
    let out: unknown;
    try {
      if (!this.opts.onRequest) throw invalid("m", `no method ${method} on this stream`);
      out = await this.opts.onRequest(method, body, this);
    } catch (e) {
      this.write({ t: "err", id, e: toWireError(e) });
      if (isFleetlinkError(e, "INVALID_ARGUMENT") || isFleetlinkError(e, "PAYLOAD_TOO_LARGE")) this.refuse();
      return;
    }
    try {
      if (this.deferrable.has(method) && this.isOpen) this.defer({ t: "res", id, b: out });
      else this.write({ t: "res", id, b: out });
    } catch (e) {
      // An answer JSON cannot encode (a BigInt, a cycle) becomes a typed error instead of an exception.
      this.write({ t: "err", id, e: toWireError(unencodable(e)) });
    }
  }
}

/** See ChannelOptions.maxRefused. */
export const DEFAULT_MAX_REFUSED = { count: 100, windowMs: 10_000 } as const;

const unencodable = (e: unknown): FleetlinkError =>
  new FleetlinkError("INVALID_ARGUMENT", `body cannot be encoded as JSON: ${describeError(e)}`, {
    field: "b",
    cause: e,
  });
