import { FleetlinkError } from "../protocol/errors.ts";
import { fromWireError, type WireError } from "../protocol/frames.ts";

/** JSON over HTTP to any of several hub replicas: a replica that cannot be reached is skipped, in turn. */
export class HubClient {
  private index = 0;
  readonly hubs: string[];
  private readonly token: string;

  constructor(hubs: string[], token: string) {
    if (hubs.length === 0)
      throw new FleetlinkError("INVALID_ARGUMENT", "hub: at least one hub URL", { field: "hub" });
    this.hubs = hubs.map((h) => h.replace(/\/$/, ""));
    this.token = token;
  }

  get current(): string {
    return this.hubs[this.index % this.hubs.length]!;
  }

  get authHeader(): string {
    return `Bearer ${this.token}`;
  }

  /** Moves on to the next replica (after a failure). */
  rotate(): void {
    this.index++;
  }

  /**
   * Sends one request. Network failures move to the next replica and retry, so only idempotent requests
   * may pass `retry: true` (fleetlink's pushes are: the coordinator chooses instruction ids).
   */
  async request<T>(method: string, path: string, body?: unknown, opts: { retry?: boolean } = {}): Promise<T> {
    const tries = opts.retry === false ? 1 : this.hubs.length * 2;
    let last: unknown;
    for (let i = 0; i < tries; i++) {
      let res: Response;
      try {
        res = await fetch(`${this.current}${path}`, {
          method,
          headers: {
            authorization: this.authHeader,
            ...(body === undefined ? {} : { "content-type": "application/json" }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (e) {
        last = new FleetlinkError("STORE_UNAVAILABLE", `hub ${this.current}: ${(e as Error).message}`, {
          cause: e,
        });
        this.rotate();
        if (i + 1 < tries) await new Promise((r) => setTimeout(r, 50 * (i + 1)));
        continue;
      }
      const json = (await res.json().catch(() => ({}))) as { error?: WireError };
      if (!res.ok) {
        // Only a fleetlink error body is trusted as one; anything else (a proxy's page…) becomes a status error.
        const wire = json.error;
        const err =
          wire && typeof wire === "object" && typeof wire.code === "string"
            ? fromWireError(wire)
            : new FleetlinkError(
                res.status >= 500 ? "STORE_UNAVAILABLE" : "INVALID_ARGUMENT",
                `HTTP ${res.status} from ${this.current}${path}`,
              );
        if (res.status >= 500 && err.code === "FLEETLINK_E_STORE_UNAVAILABLE" && i + 1 < tries) {
          last = err;
          this.rotate();
          continue;
        }
        throw err;
      }
      return json as T;
    }
    throw last;
  }
}
