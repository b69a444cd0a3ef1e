import { FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import type { ObjectStore } from "./object-store.ts";

/**
 * Where a checkpoint lives: `<run>/<checkpoint id>/host<k>/state` for each host's part, then
 * `<run>/<checkpoint id>/MANIFEST.json`, written last, only after every part is complete and verified. A
 * checkpoint without a manifest is never listed, never "latest", and is garbage-collected.
 */
export const hostKey = (runId: string, id: string, hostIdx: number): string =>
  `${runId}/${id}/host${hostIdx}/state`;
export const manifestKey = (runId: string, id: string): string => `${runId}/${id}/MANIFEST.json`;

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

/** Complete checkpoints of a run (those with a manifest), oldest first; ids are UUIDv7, so time-ordered. */
export const listCheckpoints = async (objects: ObjectStore, runId: string): Promise<Manifest[]> => {
  const keys = (await objects.list(`${runId}/`))
    .map((o) => o.key)
    .filter((k) => k.endsWith("/MANIFEST.json"));
  const out: Manifest[] = [];
  for (const k of keys) {
    try {
      out.push(JSON.parse(new TextDecoder().decode(await objects.getBytes(k))) as Manifest);
    } catch (e) {
      if (!isFleetlinkError(e, "CHECKPOINT_NOT_FOUND")) throw e; // deleted by a concurrent GC
    }
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : 1));
};

/** The manifest of `id`, or of the newest complete checkpoint for "latest". */
export const findCheckpoint = async (objects: ObjectStore, runId: string, id: string): Promise<Manifest> => {
  if (id === "latest") {
    const all = await listCheckpoints(objects, runId);
    const m = all[all.length - 1];
    if (!m) throw new FleetlinkError("CHECKPOINT_NOT_FOUND", `run ${runId} has no complete checkpoint`);
    return m;
  }
  try {
    return JSON.parse(new TextDecoder().decode(await objects.getBytes(manifestKey(runId, id)))) as Manifest;
  } catch (e) {
    if (isFleetlinkError(e, "CHECKPOINT_NOT_FOUND"))
      throw new FleetlinkError("CHECKPOINT_NOT_FOUND", `no complete checkpoint ${id} in run ${runId}`);
    throw e;
  }
};

/**
 * Retention: keeps the newest `keep` complete checkpoints, deletes older ones, and deletes incomplete ones
 * (no manifest) that are older than the newest complete one or than `graceMs` (a push may still be writing).
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
    return (newestComplete !== undefined && id < newestComplete) || age(id) > (opts.graceMs ?? 10 * 60_000);
  });
  // Manifests go first, so a checkpoint being deleted stops being listed before its parts disappear.
  for (const id of doomed) {
    const keys = byId.get(id)!.keys;
    await objects.delete(keys.filter((k) => k.endsWith("/MANIFEST.json")));
    await objects.delete(keys.filter((k) => !k.endsWith("/MANIFEST.json")));
  }
  return doomed;
};

/** The creation time (ms) embedded in a UUIDv7. */
export const uuidv7Time = (id: string): number => Number.parseInt(id.replace(/-/g, "").slice(0, 12), 16);
