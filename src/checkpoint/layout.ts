import { FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import { checkKey, type ObjectStore } from "./object-store.ts";

/** A run or checkpoint id used as one key segment: a `/` in it would let one run's keys alias another's. */
const checkSegment = (s: string, field: string): void => {
  checkKey(s, field);
  if (s.includes("/"))
    throw new FleetlinkError("INVALID_ARGUMENT", `${field}: must not contain "/"`, { field });
};

/**
 * Where a checkpoint lives: `<run>/<checkpoint id>/host<k>/state` for each host's part, then
 * `<run>/<checkpoint id>/MANIFEST.json`, written last, only after every part is complete and verified. A
 * checkpoint without a manifest is never listed, never "latest", and is garbage-collected.
 * Every key is derived from run, checkpoint id and host index alone, by the hub: a host is told where to
 * write and never chooses (see checkPart).
 */
/** The hub's own state is checkpointed like a one-host run named "hub". */
export const HUB_RUN = "hub";

export const hostPrefix = (runId: string, id: string, hostIdx: number): string => {
  checkSegment(runId, "runId");
  checkSegment(id, "id");
  if (!Number.isSafeInteger(hostIdx) || hostIdx < 0)
    throw new FleetlinkError("INVALID_ARGUMENT", `hostIdx: must be a non-negative integer, not ${hostIdx}`, {
      field: "hostIdx",
    });
  return `${runId}/${id}/host${hostIdx}/`;
};
export const hostKey = (runId: string, id: string, hostIdx: number): string =>
  `${hostPrefix(runId, id, hostIdx)}state`;
export const manifestKey = (runId: string, id: string): string => `${runId}/${id}/MANIFEST.json`;

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** True if key is a valid key under prefix (so no `..` segment walks back out of it). */
export const isUnder = (key: string, prefix: string): boolean => {
  if (!key.startsWith(prefix)) return false;
  try {
    checkKey(key);
    return true;
  } catch {
    return false;
  }
};

/**
 * Throws HOST_MISMATCH unless `part` is host `hostIdx`'s part of checkpoint `id` of run `runId`, stored
 * under that host's own prefix: a manifest (or a host's reply) naming another run's or another host's key
 * must never make an honest node read it. Throws CHECKSUM_MISMATCH if it records no valid size or SHA-256.
 */
export const checkPart = (part: unknown, runId: string, id: string, hostIdx: number): HostPart => {
  const p = part as HostPart;
  if (typeof p !== "object" || p === null || typeof p.key !== "string")
    throw new FleetlinkError("HOST_MISMATCH", `no part for host ${hostIdx} (got ${typeof part})`, {
      field: "part",
    });
  if (p.hostIdx !== hostIdx)
    throw new FleetlinkError("HOST_MISMATCH", `part of host ${p.hostIdx} offered as host ${hostIdx}'s`, {
      field: "part",
    });
  const prefix = hostPrefix(runId, id, hostIdx);
  if (!isUnder(p.key, prefix))
    throw new FleetlinkError(
      "HOST_MISMATCH",
      `part key ${JSON.stringify(p.key.slice(0, 200))} is outside host ${hostIdx}'s own prefix ${prefix}`,
      { field: "part.key" },
    );
  if (
    !Number.isSafeInteger(p.size) ||
    p.size < 0 ||
    typeof p.sha256 !== "string" ||
    !SHA256_HEX.test(p.sha256)
  )
    throw new FleetlinkError("CHECKSUM_MISMATCH", `part ${p.key} records no valid size and sha256`, {
      field: "part",
    });
  return p;
};

export interface HostInfo {
  hostIdx: number;
  nHosts: number;
}

export interface HostPart {
  hostIdx: number;
  nodeId: string;
  key: string;
  size: number;
  sha256: string;
}

export interface Manifest {
  id: string;
  runId: string;
  createdAt: number;
  nHosts: number;
  hosts: HostPart[];
}

/** Throws HOST_MISMATCH unless `hostInfo` is a valid role and equals the assigned one. */
export const checkHostInfo = (hostInfo: unknown, assigned: HostInfo | undefined): HostInfo => {
  const h = hostInfo as HostInfo;
  if (
    typeof h !== "object" ||
    h === null ||
    !Number.isInteger(h.hostIdx) ||
    !Number.isInteger(h.nHosts) ||
    h.hostIdx < 0 ||
    h.nHosts < 1 ||
    h.hostIdx >= h.nHosts
  )
    throw new FleetlinkError(
      "HOST_MISMATCH",
      `hostInfo ${JSON.stringify(hostInfo)}: hostIdx must be in [0, nHosts)`,
      {
        field: "hostInfo",
      },
    );
  if (!assigned)
    throw new FleetlinkError("HOST_MISMATCH", "this node has no host role in this run", {
      field: "hostInfo",
    });
  if (assigned.hostIdx !== h.hostIdx || assigned.nHosts !== h.nHosts)
    throw new FleetlinkError(
      "HOST_MISMATCH",
      `hostInfo says host ${h.hostIdx}/${h.nHosts}, this node is host ${assigned.hostIdx}/${assigned.nHosts}`,
      { field: "hostInfo" },
    );
  return h;
};

/** A manifest counts only where it says it belongs: one copied into another run's prefix is not that run's. */
const readManifest = async (objects: ObjectStore, runId: string, id: string): Promise<Manifest | null> => {
  const m = JSON.parse(new TextDecoder().decode(await objects.getBytes(manifestKey(runId, id)))) as Manifest;
  return typeof m === "object" && m !== null && m.runId === runId && m.id === id && Array.isArray(m.hosts)
    ? m
    : null;
};

/** Complete checkpoints of a run (those with a manifest), oldest first; ids are UUIDv7, so time-ordered. */
export const listCheckpoints = async (objects: ObjectStore, runId: string): Promise<Manifest[]> => {
  const ids = (await objects.list(`${runId}/`))
    .map((o) => o.key.split("/"))
    .filter((segs) => segs.length === 3 && segs[2] === "MANIFEST.json")
    .map((segs) => segs[1]!);
  const out: Manifest[] = [];
  for (const id of ids) {
    try {
      const m = await readManifest(objects, runId, id);
      if (m) out.push(m);
    } catch (e) {
      if (!isFleetlinkError(e, "CHECKPOINT_NOT_FOUND")) throw e; // deleted by a concurrent GC
    }
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : 1));
};

/** The commands a CHECKPOINT_NOT_FOUND names as what to do next: the one that lists checkpoints, the one that makes one. */
export interface NextSteps {
  list: string;
  push: string;
}

/** The manifest of `id`, or of the newest complete checkpoint for "latest". */
export const findCheckpoint = async (
  objects: ObjectStore,
  runId: string,
  id: string,
  next?: NextSteps,
): Promise<Manifest> => {
  if (id === "latest") {
    const all = await listCheckpoints(objects, runId);
    const m = all[all.length - 1];
    if (!m)
      throw new FleetlinkError(
        "CHECKPOINT_NOT_FOUND",
        `run ${runId} has no complete checkpoint${next ? `: push one first (${next.push})` : ""}`,
        { field: "id" },
      );
    return m;
  }
  let m: Manifest | null;
  try {
    checkSegment(id, "id");
    m = await readManifest(objects, runId, id);
  } catch (e) {
    if (!isFleetlinkError(e, "CHECKPOINT_NOT_FOUND")) throw e;
    m = null;
  }
  if (!m)
    throw new FleetlinkError(
      "CHECKPOINT_NOT_FOUND",
      `no complete checkpoint ${id} in run ${runId}${next ? `: ${next.list} lists the ones there are` : ""}`,
      { field: "id" },
    );
  return m;
};

/** How long an incomplete checkpoint, or a temp file no write touches, may be mid-push. (10 minutes) */
export const GC_GRACE_MS = 10 * 60_000;

/**
 * Retention: keeps the newest `keep` complete checkpoints, deletes older ones, and deletes incomplete ones
 * (no manifest) that are older than the newest complete one or than `graceMs` (a push may still be writing).
 * Then removes the temp files of writes killed midway (file://: invisible to `list`, so they are not found by
 * key): those of checkpoints older than the newest complete one and not kept, whatever their age (the same
 * rule as their finished parts: a later push of the run succeeded, so a host killed mid-push leaves nothing
 * behind past it), and any no write has touched for `graceMs`.
 */
export const collectGarbage = async (
  objects: ObjectStore,
  runId: string,
  keep: number,
  opts: { graceMs?: number; now?: number; idTime?: (id: string) => number } = {},
): Promise<string[]> => {
  const all = await objects.list(`${runId}/`);
  const byId = new Map<string, { keys: string[]; complete: boolean }>();
  for (const o of all) {
    const id = o.key.split("/")[1]!;
    const e = byId.get(id) ?? { keys: [], complete: false };
    e.keys.push(o.key);
    if (o.key.endsWith("/MANIFEST.json")) e.complete = true;
    byId.set(id, e);
  }
  const ids = [...byId.keys()].sort();
  const complete = ids.filter((id) => byId.get(id)!.complete);
  const keepSet = new Set(complete.slice(-keep));
  const newestComplete = complete[complete.length - 1];
  const now = opts.now ?? Date.now();
  const age = (id: string) => now - (opts.idTime ?? uuidv7Time)(id);
  const doomed = ids.filter((id) => {
    const e = byId.get(id)!;
    if (e.complete) return !keepSet.has(id);
    return (newestComplete !== undefined && id < newestComplete) || age(id) > (opts.graceMs ?? GC_GRACE_MS);
  });
  // Manifests go first, so a checkpoint being deleted stops being listed before its parts disappear.
  for (const id of doomed) {
    const keys = byId.get(id)!.keys;
    await objects.delete(keys.filter((k) => k.endsWith("/MANIFEST.json")));
    await objects.delete(keys.filter((k) => !k.endsWith("/MANIFEST.json")));
  }
  const before = now - (opts.graceMs ?? GC_GRACE_MS);
  await objects.removeStalePartials?.(`${runId}/`, (path, mtimeMs) => {
    // run/ID/…/.NAME.RANDOM.fleetlink-partial: a part of checkpoint ID (or its manifest) being written.
    const segs = path.split("/");
    const id = segs.length > 2 ? segs[1] : undefined;
    const superseded =
      id !== undefined && newestComplete !== undefined && id < newestComplete && !keepSet.has(id);
    return superseded || mtimeMs < before;
  });
  return doomed;
};

/** The creation time (ms) embedded in a UUIDv7. */
export const uuidv7Time = (id: string): number => Number.parseInt(id.replace(/-/g, "").slice(0, 12), 16);
