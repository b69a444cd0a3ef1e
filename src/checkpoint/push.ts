import { FleetlinkError } from "../protocol/errors.ts";
import type { StoredRecord } from "../store/store.ts";
import { callHosts } from "./host-calls.ts";
import { checkPart, collectGarbage, type HostPart, hostKey, type Manifest, manifestKey } from "./layout.ts";
import { errorKind } from "./object-store.ts";
import { type HostStatus, type OpContext, OpRecord, type OpStatus } from "./op-record.ts";
import type { HostRole, Roles } from "./roles.ts";

/**
 * A push: every host writes its part where the hub tells it, then the manifest is written last (only if every
 * part is there, whole), then retention removes the oldest checkpoints beyond `keep`.
 */
export const runPush = async (
  cx: OpContext,
  runId: string,
  id: string,
  roles: Roles,
  rec0: StoredRecord<OpStatus>,
): Promise<OpStatus> => {
  const rec = new OpRecord(cx.store, rec0);
  try {
    // The hub decides every key; a host only writes where it is told.
    const keys = roles.hosts.map((h) => hostKey(runId, id, h.hostIdx));
    const results = await callHosts(cx, runId, roles, (k) => {
      const h = roles.hosts[k]!;
      return {
        dst: h.nodeId,
        method: "checkpoint.push",
        payload: { runId, id, key: keys[k], hostInfo: { hostIdx: h.hostIdx, nHosts: roles.nHosts } },
      };
    });
    rec.end();
    const hosts: HostStatus[] = [];
    const parts: HostPart[] = [];
    let firstError: OpStatus["error"];
    for (const [k, r] of results.entries()) {
      const h = roles.hosts[k]!;
      let err: { kind: string; message: string } | undefined;
      try {
        if (!r.ok) throw r.error;
        parts.push(await verifyPart(cx, r.value, runId, id, h, keys[k]!));
      } catch (e) {
        err = { kind: errorKind(e), message: (e as Error).message };
      }
      hosts.push(
        err
          ? { hostIdx: h.hostIdx, nodeId: h.nodeId, status: "error", error: err }
          : { hostIdx: h.hostIdx, nodeId: h.nodeId, status: "ok" },
      );
      cx.observe?.host({
        kind: "push",
        outcome: err?.kind ?? "ok",
        bytes: err ? 0 : parts.at(-1)!.size,
      });
      if (err && !firstError) firstError = { ...err, hostIdx: h.hostIdx };
    }
    if (firstError) return await rec.save({ status: "error", hosts, error: firstError });
    const manifest: Manifest = { id, runId, createdAt: Date.now(), nHosts: roles.nHosts, hosts: parts };
    await cx.objects.put(manifestKey(runId, id), new TextEncoder().encode(JSON.stringify(manifest, null, 2)));
    const done = await rec.save({ status: "ok", hosts });
    await collectGarbage(cx.objects, runId, cx.keep).catch((e) =>
      cx.log.warn({ err: String(e), runId }, "checkpoint garbage collection failed"),
    );
    return done;
  } catch (e) {
    rec.end();
    const err = { kind: errorKind(e), message: (e as Error).message };
    return rec.save({ status: "error", error: err }).catch(() => rec.value);
  }
};

/**
 * Before the manifest may name a host's part: the reply names exactly the key the hub told it (HOST_MISMATCH
 * otherwise: a host must not make its run's manifest point at another run's or host's object), and the
 * object is there, whole. The manifest entry is built from what the hub knows, not from the reply.
 */
const verifyPart = async (
  cx: OpContext,
  reply: unknown,
  runId: string,
  id: string,
  h: HostRole,
  key: string,
): Promise<HostPart> => {
  const part = checkPart(reply, runId, id, h.hostIdx);
  if (part.key !== key)
    throw new FleetlinkError(
      "HOST_MISMATCH",
      `host ${h.hostIdx} replied with key ${JSON.stringify(part.key.slice(0, 200))}, not ${key}`,
    );
  const head = await cx.objects.head(key);
  if (!head || head.size !== part.size)
    throw new FleetlinkError(
      "CHECKSUM_MISMATCH",
      `${key}: stored ${head?.size ?? "nothing"}, node wrote ${part.size} bytes`,
    );
  return { hostIdx: h.hostIdx, nodeId: h.nodeId, key, size: part.size, sha256: part.sha256 };
};
