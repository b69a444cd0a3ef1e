import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BeginUploadAnswer, BlobInfo, UploadStatus } from "../protocol/blobs.ts";
import { UPLOAD_OFFSET_HEADER } from "../protocol/blobs.ts";
import { isFleetlinkError } from "../protocol/errors.ts";
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
  /** Directory of the content-addressed download cache. (Default: `<os tmpdir>/fleetlink-blobs`) */
  cacheDir?: string;
  /** Bytes of complete blobs the cache keeps before evicting the least recently used. (Default: 4 GiB) */
  cacheBytes?: number;
  /** Bytes up to this size travel inline in payloads; larger ones as blobs. (Default: DEFAULT_INLINE_BYTES) */
  inlineBytes?: number;
  /** A silent socket ends a transfer's request after this long, in ms; the transfer resumes. (Default: 30000) */
  idleMs?: number;
  /** Retries of one transfer after cuts, resets and 5xx answers. (Default: 8 attempts, 100 ms to 5 s) */
  retry?: BackoffPolicy;
}

/** Counters a test or a dashboard can read: what crossed the network. */
export interface BlobTransferStats {
  uploads: number;
  bytesUploaded: number;
  downloads: number;
  bytesDownloaded: number;
}

const DEFAULT_RETRY: BackoffPolicy = { initialMs: 100, maxMs: 5000, maxAttempts: 8 };

/** The parts of a client that every endpoint of one process shares: sockets, cache and counters. */
export class BlobTransfers {
  readonly agents: Agents = newAgents();
  readonly cache: BlobCache;
  readonly inlineBytes: number;
  readonly idleMs: number;
  readonly retry: BackoffPolicy;
  readonly stats: BlobTransferStats = { uploads: 0, bytesUploaded: 0, downloads: 0, bytesDownloaded: 0 };
  /** Downloads in flight by sha256: two readers of one blob share one download. */
  readonly downloading = new Map<string, Promise<void>>();

  constructor(o: BlobClientOptions & { inlineBytes: number }) {
    this.cache = new BlobCache(
      o.cacheDir ?? join(tmpdir(), "fleetlink-blobs"),
      o.cacheBytes ?? DEFAULT_BLOB_CACHE_BYTES,
    );
    this.inlineBytes = o.inlineBytes;
    this.idleMs = o.idleMs ?? 30_000;
    this.retry = o.retry ?? DEFAULT_RETRY;
  }

  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
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
  /** Blobs made from a given buffer object, so pushing it again sends nothing. */
  private readonly seen = new WeakMap<object, Promise<BlobInfo>>();

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

  /** The payload as it goes on the wire (see codec.ts). */
  encode(payload: unknown, opts: { extra?: Record<string, unknown>; root?: string } = {}): Promise<unknown> {
    return encodePayload(
      payload,
      {
        inlineBytes: this.transfers.inlineBytes,
        upload: (bytes) => this.upload(bytes, { extra: opts.extra }),
        seen: opts.extra ? undefined : this.seen,
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
    for (;;) {
      const hub = this.endpoint.hub();
      try {
        if (!upload) {
          const a = (await this.json("POST", prefix, { ...extra, ...blob }, signal)) as BeginUploadAnswer;
          if (a.state === "present") return blob;
          upload = a.upload;
        } else
          upload = (await this.json(
            "GET",
            `${prefix}/uploads/${upload.id}`,
            undefined,
            signal,
          )) as UploadStatus;
        if (upload.complete) return blob;
        const res = await send(this.transfers.agents, "PUT", `${hub}${prefix}/uploads/${upload.id}`, {
          headers: {
            ...this.endpoint.headers(),
            "content-type": "application/octet-stream",
            "content-length": src.size - upload.offset,
            [UPLOAD_OFFSET_HEADER]: upload.offset,
          },
          body: src.from(upload.offset),
          signal,
          idleMs: this.transfers.idleMs,
        });
        if (res.statusCode !== 200) throw await answerError(res);
        const sent = src.size - upload.offset;
        upload = (await readJson(res)) as UploadStatus;
        this.transfers.stats.uploads++;
        this.transfers.stats.bytesUploaded += sent;
        if (upload.complete) return blob;
      } catch (e) {
        if (signal?.aborted) throw e;
        // The upload was ended (collected while idle, or lost with a replica's local state): begin again.
        if (upload && isFleetlinkError(e, "BLOB_NOT_FOUND") && e.field === "upload") upload = undefined;
        else if (!(isFleetlinkError(e, "CONFLICT") && e.field === UPLOAD_OFFSET_HEADER) && !transient(e))
          throw e;
        const d = backoff.next();
        if (d === undefined) throw e;
        if (!isFleetlinkError(e)) this.endpoint.unreachable?.(hub);
        await sleep(d, signal);
      }
    }
  }

  /** The path of the blob's verified file in the cache (downloaded first if needed), held until release. */
  async acquire(blob: BlobInfo, signal?: AbortSignal): Promise<string> {
    const { cache, downloading } = this.transfers;
    cache.hold(blob.sha256);
    try {
      if (!cache.has(blob.sha256, blob.size)) {
        let p = downloading.get(blob.sha256);
        if (!p) {
          p = this.download(blob, signal).finally(() => downloading.delete(blob.sha256));
          downloading.set(blob.sha256, p);
        }
        await p;
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
