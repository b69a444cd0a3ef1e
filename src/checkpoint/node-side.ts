import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { Handler } from "../node/handler.ts";
import type { AgentPlugin, AgentPluginHost } from "../node/plugin.ts";
import { FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import {
  checkHostInfo,
  checkPart,
  findCheckpoint,
  type HostInfo,
  type HostPart,
  hostKey,
  hostPrefix,
  isUnder,
} from "./layout.ts";
import { errorKind, type ObjectStore } from "./object-store.ts";
import { openObjectStore } from "./open.ts";

/** A snapshot as something ObjectStore.put takes; INVALID_ARGUMENT naming what it got otherwise. */
const toBody = (snap: Snapshot): Readable | Uint8Array => {
  if (snap instanceof Uint8Array || snap instanceof Readable) return snap;
  if (typeof snap === "string") return Buffer.from(snap, "utf8");
  if (snap instanceof ReadableStream) return Readable.fromWeb(snap as WebReadableStream<Uint8Array>);
  if (snap !== null && typeof snap === "object" && Symbol.asyncIterator in snap) return Readable.from(snap);
  throw new FleetlinkError(
    "INVALID_ARGUMENT",
    `state.snapshot() returned ${snap === null ? "null" : typeof snap}; expected bytes, a string or a stream`,
    { field: "snapshot" },
  );
};

/** Parts up to this size are pulled into memory; larger ones through a temporary file. */
const IN_MEMORY_MAX = 256 * 1024 * 1024;

const checkBytes = (part: HostPart, size: number, sha: string): void => {
  if (size !== part.size || sha !== part.sha256)
    throw new FleetlinkError(
      "CHECKSUM_MISMATCH",
      `${part.key}: got ${size} bytes sha256 ${sha.slice(0, 12)}…, manifest says ${part.size} bytes ${part.sha256.slice(0, 12)}…`,
    );
};

/** What `NodeState.snapshot` may return: bytes, a string (saved as UTF-8) or a stream of bytes. */
export type Snapshot =
  | Uint8Array
  | string
  | Readable
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array>;

/** What a node exposes so the coordinator can checkpoint and restore it. */
export interface NodeState {
  /** The state to save: bytes, a string (UTF-8) or a stream (Node or web). */
  snapshot(): Snapshot | Promise<Snapshot>;
  /** Replaces the state with a saved one (already verified: size and SHA-256 match the manifest). */
  restore(data: Readable): void | Promise<void>;
}

export interface StandbyOptions {
  runId: string;
  hostIdx: number;
  /** How often to pull host k's newest checkpoint, in ms. (Default: 5000) */
  intervalMs?: number;
}

interface PullRequest {
  runId: string;
  id: string;
  hostInfo: unknown;
  part: HostPart;
  /** The writer of a part this node did not write, when the hub means it to restore that node's state. */
  acceptFrom?: string;
}

export type PullState =
  | { status: "not_requested" }
  | { status: "in_progress"; id: string }
  | { status: "ok"; id: string; bytes: number }
  | { status: "error"; id: string; error: { kind: string; message: string } };

export interface NodeCheckpointsOptions {
  /** The state the coordinator can checkpoint and restore. */
  state: NodeState;
  /** Where checkpoints live: file://DIR or s3://BUCKET/PREFIX, or an open store. (Default: file://./.fleetlink/checkpoints) */
  objects?: string | ObjectStore;
  /** Run as a warm standby for one host: pull its newest checkpoint periodically, take over when activated. */
  standby?: StandbyOptions;
}

/**
 * Fleet checkpoints on a node, as an agent plug-in: `new NodeAgent({ ..., plugins: [nodeCheckpoints({ state,
 * objects })] })`. It serves `checkpoint.push`, `.pull`, `.pull_status`, `.assign` and `.activate`, and keeps
 * a standby's warm copy once the agent has an identity.
 */
export const nodeCheckpoints = (o: NodeCheckpointsOptions): NodeCheckpoints => new NodeCheckpoints(o);

/** The checkpoint system methods a node agent serves (`checkpoint.push`, `.pull`, `.pull_status`, …). */
export class NodeCheckpoints implements AgentPlugin {
  readonly name = "checkpoints";
  private readonly roles = new Map<string, HostInfo>();
  private readonly pulls = new Map<string, PullState>();
  private readonly state: NodeState;
  private readonly objects: ObjectStore;
  private readonly standby: StandbyOptions | undefined;
  private host: AgentPluginHost | undefined;
  private warm: { runId: string; hostIdx: number; id: string; file: string; dir: string } | null = null;
  private standbyTimer: ReturnType<typeof setInterval> | undefined;

  constructor(o: NodeCheckpointsOptions) {
    this.state = o.state;
    this.objects =
      typeof o.objects === "object"
        ? o.objects
        : openObjectStore(o.objects ?? `file://${process.cwd()}/.fleetlink/checkpoints`);
    this.standby = o.standby;
  }

  private nodeId(): string {
    return this.host?.nodeId ?? "";
  }

  handlers(host: AgentPluginHost): Record<string, Handler> {
    this.host = host;
    return {
      "checkpoint.assign": (p) => this.assign(p as HostInfo & { runId: string }),
      "checkpoint.push": (p) =>
        this.push(p as { runId: string; id: string; key?: unknown; hostInfo: unknown }),
      "checkpoint.pull": (p) => this.pull(p as PullRequest),
      // The hub learns a pull's outcome from its reply; this stays for callers that ask the node directly.
      "checkpoint.pull_status": (p) =>
        this.pulls.get((p as { runId: string }).runId) ?? { status: "not_requested" },
      "checkpoint.activate": (p) => this.activate(p as HostInfo & { runId: string }),
    };
  }

  /** Starts the standby's refreshes, if this node is one. */
  start(host: AgentPluginHost): void {
    this.host = host;
    if (this.standby) this.startStandby(this.standby, (m) => host.log.warn({ msg: m }, "standby"));
  }

  role(runId: string): HostInfo | undefined {
    return this.roles.get(runId);
  }

  private assign(p: HostInfo & { runId: string }): { ok: true } {
    const h = checkHostInfo(
      { hostIdx: p.hostIdx, nHosts: p.nHosts },
      { hostIdx: p.hostIdx, nHosts: p.nHosts },
    );
    this.roles.set(p.runId, h);
    return { ok: true };
  }

  /**
   * Snapshots the state and streams it to the key the hub names (`<run>/<id>/host<k>/state`); the role, and
   * that the key is under this host's own prefix, are checked before anything is read.
   */
  private async push(p: { runId: string; id: string; key?: unknown; hostInfo: unknown }): Promise<HostPart> {
    const h = checkHostInfo(p.hostInfo, this.roles.get(p.runId));
    const key = p.key ?? hostKey(p.runId, p.id, h.hostIdx);
    const prefix = hostPrefix(p.runId, p.id, h.hostIdx);
    if (typeof key !== "string" || !isUnder(key, prefix))
      throw new FleetlinkError(
        "HOST_MISMATCH",
        `told to write ${JSON.stringify(key)}, outside this host's prefix ${prefix}`,
        { field: "key" },
      );
    const res = await this.objects.put(key, toBody(await this.state.snapshot()));
    return { hostIdx: h.hostIdx, nodeId: this.nodeId(), key, size: res.size, sha256: res.sha256 };
  }

  /**
   * Restores this host's part and replies when done: `{ status: "ok" }`, or `{ status: "error", error }` with
   * the error's kind (as `checkpoint.pull_status` reports it too). The agent keeps the instruction's lease alive
   * with progress while it runs, so a long restore is not redelivered. The part must be this host's (role, run,
   * checkpoint and host prefix), and written by this node, unless the hub says it restores another node's part
   * by host index (`acceptFrom` names that node: a standby that took over, a replaced node, or roles
   * reassigned on purpose); those refusals are error replies, before anything is read.
   */
  private async pull(p: PullRequest): Promise<PullState> {
    const h = checkHostInfo(p.hostInfo, this.roles.get(p.runId));
    checkPart(p.part, p.runId, p.id, h.hostIdx);
    const self = this.nodeId();
    if (p.part.nodeId !== self && p.acceptFrom !== p.part.nodeId)
      throw new FleetlinkError(
        "HOST_MISMATCH",
        `host ${h.hostIdx}'s part of checkpoint ${p.id} was written by node ${p.part.nodeId}, not by this node (${self}), and the hub did not say to restore another node's state`,
        { field: "part.nodeId" },
      );
    const cur = this.pulls.get(p.runId);
    if (cur?.status === "in_progress")
      throw new FleetlinkError("CONFLICT", `a pull of ${cur.id} is in progress on this node`);
    this.pulls.set(p.runId, { status: "in_progress", id: p.id });
    let done: PullState;
    try {
      if (p.part.size <= IN_MEMORY_MAX)
        await this.state.restore(Readable.from(await this.downloadToMemory(p.part)));
      else {
        const { file, dir } = await this.download(p.part);
        try {
          await this.state.restore(createReadStream(file));
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      }
      done = { status: "ok", id: p.id, bytes: p.part.size };
    } catch (e) {
      done = { status: "error", id: p.id, error: { kind: errorKind(e), message: (e as Error).message } };
    }
    this.pulls.set(p.runId, done);
    return done;
  }

  /** Downloads a small part into memory (hashed as it arrives), checking size and SHA-256 before any restore. */
  private async downloadToMemory(part: HostPart): Promise<Buffer[]> {
    const chunks: Buffer[] = [];
    const hash = createHash("sha256");
    let size = 0;
    for await (const c of await this.objects.get(part.key)) {
      hash.update(c as Buffer);
      size += (c as Buffer).length;
      chunks.push(c as Buffer);
    }
    checkBytes(part, size, hash.digest("hex"));
    return chunks;
  }

  /** Downloads a part to a temporary file, checking size and SHA-256 before anything is restored. */
  private async download(part: HostPart): Promise<{ file: string; dir: string }> {
    const dir = await mkdtemp(join(tmpdir(), "fleetlink-pull-"));
    const file = join(dir, "state");
    try {
      const hash = createHash("sha256");
      let size = 0;
      const body = await this.objects.get(part.key);
      await pipeline(
        body,
        async function* (src: AsyncIterable<Buffer>) {
          for await (const chunk of src) {
            hash.update(chunk);
            size += chunk.length;
            yield chunk;
          }
        },
        createWriteStream(file),
      );
      checkBytes(part, size, hash.digest("hex"));
      return { file, dir };
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** Standby: keeps the newest checkpoint of host k downloaded, so taking over is a local restore. */
  startStandby(s: StandbyOptions, log: (msg: string) => void): void {
    const refresh = async () => {
      try {
        const m = await findCheckpoint(this.objects, s.runId, "latest");
        if (this.warm?.id === m.id && this.warm.runId === s.runId && this.warm.hostIdx === s.hostIdx) return;
        const found = m.hosts.find((x) => x.hostIdx === s.hostIdx);
        if (!found) return;
        const part = checkPart(found, s.runId, m.id, s.hostIdx);
        const got = await this.download(part);
        const old = this.warm;
        this.warm = { runId: s.runId, hostIdx: s.hostIdx, id: m.id, ...got };
        if (old) await rm(old.dir, { recursive: true, force: true });
      } catch (e) {
        if (!isFleetlinkError(e, "CHECKPOINT_NOT_FOUND"))
          log(`standby refresh failed: ${(e as Error).message}`);
      }
    };
    void refresh();
    this.standbyTimer = setInterval(() => void refresh(), s.intervalMs ?? 5000);
    this.standbyTimer.unref();
  }

  /** Takes over host k: restores the newest checkpoint of that host (from the warm copy if current), then takes the role. */
  private async activate(
    p: HostInfo & { runId: string },
  ): Promise<{ ok: true; restoredFrom: string | null }> {
    const h = checkHostInfo(
      { hostIdx: p.hostIdx, nHosts: p.nHosts },
      { hostIdx: p.hostIdx, nHosts: p.nHosts },
    );
    let restoredFrom: string | null = null;
    try {
      const m = await findCheckpoint(this.objects, p.runId, "latest");
      const found = m.hosts.find((x) => x.hostIdx === h.hostIdx);
      if (found) {
        const part = checkPart(found, p.runId, m.id, h.hostIdx);
        const w = this.warm;
        const warm = w !== null && w.id === m.id && w.runId === p.runId && w.hostIdx === h.hostIdx;
        const local = warm ? w : await this.download(part);
        try {
          await this.state.restore(createReadStream(local.file));
        } finally {
          if (!warm) await rm(local.dir, { recursive: true, force: true });
        }
        restoredFrom = m.id;
      }
    } catch (e) {
      if (!isFleetlinkError(e, "CHECKPOINT_NOT_FOUND")) throw e;
    }
    clearInterval(this.standbyTimer);
    this.roles.set(p.runId, h);
    return { ok: true, restoredFrom };
  }

  async close(): Promise<void> {
    clearInterval(this.standbyTimer);
    if (this.warm) await rm(this.warm.dir, { recursive: true, force: true });
  }
}
