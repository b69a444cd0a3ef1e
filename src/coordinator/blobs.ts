import type { Readable } from "node:stream";
import { BlobClient, type BlobTransfers } from "../blob/client.ts";
import type { BlobMode } from "../blob/codec.ts";
import type { FleetBlob } from "../blob/handle.ts";
import type { BlobInfo } from "../protocol/blobs.ts";
import { describeError, isFleetlinkError } from "../protocol/errors.ts";
import type { WireResult } from "../protocol/wire.ts";
import type { HubClient } from "./http.ts";

/** How a fleet's runs handle binary data: shared transfers (sockets, cache) and the mode results arrive in. */
export interface FleetBlobs {
  transfers: BlobTransfers;
  /** (Default: "bytes") */
  mode: BlobMode;
}

/**
 * A run's blobs, seen from its coordinator: uploads to the run (`put`), handles on blobs it may read
 * (`get`), and the codec its pushes and results go through. The routes are run-scoped, with the admin token.
 */
export class RunBlobs {
  readonly client: BlobClient;
  private readonly mode: BlobMode;

  constructor(runId: string, http: HubClient, blobs: FleetBlobs) {
    this.mode = blobs.mode;
    this.client = new BlobClient(
      {
        hub: () => http.current,
        headers: () => ({ authorization: http.authHeader }),
        prefix: `/v1/runs/${runId}/blobs`,
        unreachable: (hub) => http.rotate(hub),
      },
      blobs.transfers,
    );
  }

  /**
   * Uploads bytes, a stream (spooled to a temp file while hashed, so a cut upload resumes) or a file to this
   * run; the handle can go in any payload of the run and costs its reference only. A blob the hub already
   * holds costs one round trip (and lets this run read it: the admin token may read any run's blobs anyway).
   *
   * The upload alone does not keep the blob: only a live message referencing it does. Push the handle within
   * the hub's blob grace (default 10 min) after put() resolves, or the blob may be collected and the push is
   * refused BLOB_NOT_FOUND; put() again (the bytes are sent again) if that happens.
   */
  put(
    source: Uint8Array | Readable | { path: string },
    opts: { signal?: AbortSignal } = {},
  ): Promise<FleetBlob> {
    return this.client.put(source, opts);
  }

  /** A handle on a blob the run may read (by sha256 and size), downloaded on first use. */
  get(blob: BlobInfo): FleetBlob {
    return this.client.handle(blob);
  }

  /** A payload as it goes on the wire: binary data over the inline threshold uploaded first. */
  encode(payload: unknown, signal?: AbortSignal): Promise<unknown> {
    return this.client.encode(payload, { signal });
  }

  /**
   * A reply as the user gets it: its binary data decoded (downloaded, in mode "bytes"). A reply whose blob
   * cannot be read becomes that node's error, not the whole call's.
   */
  async decode(r: WireResult): Promise<WireResult> {
    if (r.error || typeof r.payload !== "object" || r.payload === null) return r;
    try {
      const payload = await this.client.decode(r.payload, { mode: this.mode, root: "result" });
      return payload === r.payload ? r : { ...r, payload };
    } catch (e) {
      return {
        ...r,
        payload: null,
        error: {
          code: isFleetlinkError(e) ? e.code : "FLEETLINK_E_BLOB_NOT_FOUND",
          message: `reading the reply's binary data failed: ${describeError(e)}`,
        },
      };
    }
  }
}
