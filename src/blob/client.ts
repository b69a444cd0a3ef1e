import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BeginUploadAnswer, BlobInfo, UploadStatus } from "../protocol/blobs.ts";
import { UPLOAD_OFFSET_HEADER } from "../protocol/blobs.ts";
import { invalid, isFleetlinkError } from "../protocol/errors.ts";
import { Backoff, type BackoffPolicy } from "../util/backoff.ts";
import { BlobCache, DEFAULT_BLOB_CACHE_BYTES } from "./cache.ts";
import { type BlobMode, decodePayload, encodePayload } from "./codec.ts";
import { downloadOnce } from "./download.ts";
import { FleetBlob } from "./handle.ts";
import { type Agents, answerError, newAgents, readJson, send, transient } from "./http.ts";
import { type BlobSource, type PreparedSource, prepareSource } from "./source.ts";

/** Where and as whom a client reaches the hub's blob routes (contract: docs/blobs.md, "The blob HTTP API"). */
export interface BlobEndpoint {
  /** The hub URL to use now (the caller's current replica). */
  hub(): string;
  /** Headers that authenticate every request to the hub (Authorization). */
  headers(): Record<string, string>;
  /** Route prefix: `/v1/runs/<run>/blobs` (a coordinator) or `/v1/node/blobs` (a node). */
  prefix: string;
  /** Called when a hub could not be reached, so the caller moves on to its next replica. */
  unreachable?(hub: string): void;
  /** True when downloads go through presigned URLs (a node, when the hub announced "blob-urls"). */
  presigned?(): boolean;
}

export interface BlobClientOptions {
  /**
   * Directory of the content-addressed download cache, kept across restarts (partial downloads resume from
   * it). One process at a time: two processes appending to one partial file would corrupt it (the hash check
   * then discards it). (Default: a fresh temp directory, made on first use and removed at close)
   */
  cacheDir?: string;
  /** Bytes of complete blobs the cache keeps before evicting the least recently used. (Default: 4 GiB) */
  cacheBytes?: number;
  /** Bytes up to this size travel inline in payloads; larger ones as blobs. (Default: DEFAULT_INLINE_BYTES) */
  inlineBytes?: number;
  /** A silent socket ends a transfer's request after this long, in ms; the transfer resumes. (Default: 30000) */
  idleMs?: number;
  /**
   * Retries of one transfer after cuts, resets and 408/429/5xx answers, counted since the last progress.
   * (Default: 8 attempts, 100 ms to 5 s)
   */
  retry?: BackoffPolicy;
  /**
   * Bytes one PUT of an upload carries at most; a larger blob goes in several PUTs, each from the durable
   * offset the previous one answered. Keeps every request well inside a hub's or proxy's request timeout.
   * (Default: DEFAULT_PUT_BYTES, 64 MiB)
   */
  putBytes?: number;
}

/** Largest body of one upload PUT: at 10 MB/s it takes about 7 s, well inside the hub's 30 s request timeout. */
export const DEFAULT_PUT_BYTES = 64 * 1024 * 1024;

/** Counters a test or a dashboard can read: what crossed the network. */
export interface BlobTransferStats {
  uploads: number;
  bytesUploaded: number;
  downloads: number;
  bytesDownloaded: number;
}

const DEFAULT_RETRY: BackoffPolicy = { initialMs: 100, maxMs: 5000, maxAttempts: 8 };

/**
 * One download that several readers wait for. It runs under its own controller, not under any reader's
 * signal: a reader that gives up leaves, and the download is aborted only when no reader is left.
 */
export interface SharedDownload {
  done: Promise<void>;
  waiters: number;
  controller: AbortController;
}

/** Waits for `p`, or rejects with the signal's reason as soon as it aborts (p itself goes on). */
const race = <T>(p: Promise<T>, signal?: AbortSignal): Promise<T> => {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
};

/** The parts of a client that every endpoint of one process shares: sockets, cache and counters. */
export class BlobTransfers {
  readonly agents: Agents = newAgents();
  private readonly cacheDir: string | undefined;
  private readonly cacheBytes: number;
  private made: BlobCache | undefined;
  readonly inlineBytes: number;
  readonly idleMs: number;
  readonly retry: BackoffPolicy;
  readonly stats: BlobTransferStats = { uploads: 0, bytesUploaded: 0, downloads: 0, bytesDownloaded: 0 };
  readonly putBytes: number;
  /** Downloads in flight by sha256: two readers of one blob share one download. */
  readonly downloading = new Map<string, SharedDownload>();

  constructor(o: BlobClientOptions & { inlineBytes: number }) {
    this.cacheDir = o.cacheDir;
    this.cacheBytes = o.cacheBytes ?? DEFAULT_BLOB_CACHE_BYTES;
    this.inlineBytes = o.inlineBytes;
    this.idleMs = o.idleMs ?? 30_000;
    this.retry = o.retry ?? DEFAULT_RETRY;
    this.putBytes = o.putBytes ?? DEFAULT_PUT_BYTES;
    if (!Number.isSafeInteger(this.putBytes) || this.putBytes < 1)
      throw invalid("putBytes", `a whole number of bytes ≥ 1, not ${JSON.stringify(o.putBytes)}`);
  }

  /** The download cache, its directory made on first use (a fleet or agent that sends no blob makes none). */
  get cache(): BlobCache {
    if (!this.made) {
      const dir = this.cacheDir ?? mkdtempSync(join(tmpdir(), "fleetlink-blobs-"));
      if (!this.cacheDir) this.tempDir = dir;
      this.made = new BlobCache(dir, this.cacheBytes);
    }
    return this.made;
  }

  /** Ends kept-alive sockets; removes the cache directory if it was a temp one this object made. */
  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
    if (this.tempDir) rmSync(this.tempDir, { recursive: true, force: true });
    this.tempDir = undefined;
    this.made = undefined;
  }

  private tempDir: string | undefined;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((res, rej) => {
    const t = setTimeout(res, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        rej(signal.reason);
      },
      { once: true },
    );
  });

/**
 * Uploads and downloads blobs through one endpoint, resumably: an upload cut midway asks the hub for its
 * durable offset and goes on from there; a download keeps its partial file and continues with a Range.
 * Also the payload codec bound to this endpoint (encode uploads here, decode downloads from here).
 */
export class BlobClient {
  readonly endpoint: BlobEndpoint;
  readonly transfers: BlobTransfers;
  constructor(endpoint: BlobEndpoint, transfers: BlobTransfers) {
    this.endpoint = endpoint;
    this.transfers = transfers;
  }

  /** Uploads a source (`extra`: more fields of the begin body, e.g. a node's runId); resolves with its handle. */
  async put(
    source: BlobSource,
    opts: { extra?: Record<string, unknown>; signal?: AbortSignal } = {},
  ): Promise<FleetBlob> {
    return this.handle(await this.upload(source, opts));
  }

  /** A handle on a blob known by sha256 and size, downloaded through this client on first use. */
  handle(blob: BlobInfo): FleetBlob {
    return new FleetBlob(blob, {
      acquire: (b, signal) => this.acquire(b, signal),
      release: (b) => this.transfers.cache.release(b.sha256),
    });
  }

  /**
   * The payload as it goes on the wire (see codec.ts). A buffer is hashed again at every call, never
   * remembered by identity across calls: a buffer updated in place between pushes sends its new bytes.
   */
  encode(
    payload: unknown,
    opts: { extra?: Record<string, unknown>; root?: string; signal?: AbortSignal } = {},
  ): Promise<unknown> {
    return encodePayload(
      payload,
      {
        inlineBytes: this.transfers.inlineBytes,
        upload: (bytes) => this.upload(bytes, { extra: opts.extra, signal: opts.signal }),
      },
      opts.root,
    );
  }

  /** A received payload for the user (see codec.ts). */
  decode(
    payload: unknown,
    opts: { mode?: BlobMode; signal?: AbortSignal; root?: string } = {},
  ): Promise<unknown> {
    return decodePayload(
      payload,
      { mode: opts.mode, signal: opts.signal, handle: (b) => this.handle(b) },
      opts.root,
    );
  }

  /** Uploads a source, resuming after cuts; resolves with the blob once the hub verified it. */
  async upload(
    source: BlobSource,
    opts: { extra?: Record<string, unknown>; signal?: AbortSignal } = {},
  ): Promise<BlobInfo> {
    const src = await prepareSource(source, this.transfers.cache.dir);
    try {
      return await this.send(src, opts.extra ?? {}, opts.signal);
    } finally {
      await src.dispose();
    }
  }

  private async send(
    src: PreparedSource,
    extra: Record<string, unknown>,
    signal?: AbortSignal,
  ): Promise<BlobInfo> {
    const blob = { sha256: src.sha256, size: src.size };
    const { prefix } = this.endpoint;
    const backoff = new Backoff(this.transfers.retry);
    let upload: UploadStatus | undefined;
    // True when `upload` is the hub's latest answer (begin or a PUT's), so the next PUT needs no status GET.
    let fresh = false;
    for (;;) {
      const hub = this.endpoint.hub();
      try {
        if (!upload) {
          const a = (await this.json("POST", prefix, { ...extra, ...blob }, signal)) as BeginUploadAnswer;
          if (a.state === "present") return blob;
          upload = a.upload;
        } else if (!fresh)
          upload = (await this.json(
            "GET",
            `${prefix}/uploads/${upload.id}`,
            undefined,
            signal,
          )) as UploadStatus;
        fresh = false;
        if (upload.complete) return blob;
        // At most putBytes per PUT: a whole large blob in one request would outlast the hub's 30 s request
        // timeout (408) on all but the fastest links.
        const end = Math.min(src.size, upload.offset + this.transfers.putBytes);
        const res = await send(this.transfers.agents, "PUT", `${hub}${prefix}/uploads/${upload.id}`, {
          headers: {
            ...this.endpoint.headers(),
            "content-type": "application/octet-stream",
            "content-length": end - upload.offset,
            [UPLOAD_OFFSET_HEADER]: upload.offset,
          },
          body: src.from(upload.offset, end),
          signal,
          idleMs: this.transfers.idleMs,
        });
        if (res.statusCode !== 200) throw await answerError(res);
        const sent = end - upload.offset;
        upload = (await readJson(res)) as UploadStatus;
        fresh = true;
        this.transfers.stats.uploads++;
        this.transfers.stats.bytesUploaded += sent;
        // Progress: the retry budget is for failures in a row, not for the whole of a long upload.
        backoff.reset();
        if (upload.complete) return blob;
      } catch (e) {
        fresh = false;
        if (signal?.aborted) throw e;
        // The upload was ended (collected while idle, or lost with a replica's local state): begin again.
        if (upload && isFleetlinkError(e, "BLOB_NOT_FOUND") && e.field === "upload") upload = undefined;
        // CONFLICT: our offset was stale (field upload-offset), or the hub still settles a PUT that was cut
        // (field upload): ask for the status again, after a pause.
        else if (!isFleetlinkError(e, "CONFLICT") && !transient(e)) throw e;
        const d = backoff.next();
        if (d === undefined) throw e;
        if (!isFleetlinkError(e)) this.endpoint.unreachable?.(hub);
        await sleep(d, signal);
      }
    }
  }

  /**
   * The path of the blob's verified file in the cache (downloaded first if needed), held until release.
   * Readers of one blob share one download; each waits under its own signal, and the download is aborted
   * only when every reader gave up (a cancelled handler does not fail another handler's read).
   */
  async acquire(blob: BlobInfo, signal?: AbortSignal): Promise<string> {
    const { cache, downloading } = this.transfers;
    cache.hold(blob.sha256);
    try {
      if (!cache.has(blob.sha256, blob.size)) {
        let d = downloading.get(blob.sha256);
        // A download its last reader abandoned may still be writing the partial file: let it stop first.
        while (d?.controller.signal.aborted) {
          await race(
            d.done.catch(() => {}),
            signal,
          );
          d = downloading.get(blob.sha256);
        }
        if (!d) {
          const controller = new AbortController();
          const shared: SharedDownload = { controller, waiters: 0, done: Promise.resolve() };
          shared.done = this.download(blob, controller.signal).finally(() => {
            if (downloading.get(blob.sha256) === shared) downloading.delete(blob.sha256);
          });
          // Its failure reaches every reader through race(); a download no reader waits for any more is not
          // an unhandled rejection.
          shared.done.catch(() => {});
          downloading.set(blob.sha256, shared);
          d = shared;
        }
        d.waiters++;
        try {
          await race(d.done, signal);
        } finally {
          if (--d.waiters === 0) d.controller.abort(signal?.reason);
        }
        cache.evict();
      }
      return cache.path(blob.sha256);
    } catch (e) {
      cache.release(blob.sha256);
      throw e;
    }
  }

  private async download(blob: BlobInfo, signal?: AbortSignal): Promise<void> {
    const backoff = new Backoff(this.transfers.retry);
    for (;;) {
      const hub = this.endpoint.hub();
      try {
        const got = await downloadOnce(this.transfers.cache, blob, (start) =>
          this.openRange(blob, start, signal),
        );
        this.transfers.stats.downloads++;
        this.transfers.stats.bytesDownloaded += got;
        return;
      } catch (e) {
        if (signal?.aborted || !transient(e)) throw e;
        const d = backoff.next();
        if (d === undefined) throw e;
        if (!isFleetlinkError(e)) this.endpoint.unreachable?.(hub);
        await sleep(d, signal);
      }
    }
  }

  private async openRange(blob: BlobInfo, start: number, signal?: AbortSignal) {
    const range: Record<string, string> = start > 0 ? { range: `bytes=${start}-` } : {};
    const { prefix } = this.endpoint;
    if (this.endpoint.presigned?.()) {
      // The bytes come from the object store itself: no Authorization header goes to it.
      const { url } = (await this.json("GET", `${prefix}/${blob.sha256}/url`, undefined, signal)) as {
        url: string;
      };
      return send(this.transfers.agents, "GET", url, {
        headers: range,
        signal,
        idleMs: this.transfers.idleMs,
      });
    }
    return send(this.transfers.agents, "GET", `${this.endpoint.hub()}${prefix}/${blob.sha256}`, {
      headers: { ...this.endpoint.headers(), ...range },
      signal,
      idleMs: this.transfers.idleMs,
    });
  }

  private async json(method: string, path: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    const res = await send(this.transfers.agents, method, `${this.endpoint.hub()}${path}`, {
      headers: this.endpoint.headers(),
      body,
      signal,
      idleMs: this.transfers.idleMs,
    });
    if (res.statusCode! >= 300) throw await answerError(res);
    return readJson(res);
  }
}
