import type { HostRole, RoleChange, Roles } from "../protocol/checkpoint-types.ts";
import { FleetlinkError } from "../protocol/errors.ts";
import type { HostPart } from "./layout.ts";

export type { HostRole, RoleChange, Roles } from "../protocol/checkpoint-types.ts";

/**
 * Throws INVALID_ARGUMENT if a node appears twice among the hosts and standbys: a node holds one role per
 * run, so a second one would silently replace the first on the node.
 */
export const checkDistinct = (nodeIds: readonly string[], standby: readonly { nodeId: string }[]): void => {
  const seen = new Map<string, string>();
  const all = [
    ...nodeIds.map((id, k) => ({ id, as: `host ${k}`, field: `hosts[${k}]` })),
    ...standby.map((s, i) => ({ id: s.nodeId, as: `standby ${i}`, field: `standby[${i}]` })),
  ];
  for (const { id, as, field } of all) {
    const before = seen.get(id);
    if (before !== undefined)
      throw new FleetlinkError(
        "INVALID_ARGUMENT",
        `node ${id} is both ${before} and ${as}: one role per node`,
        {
          field,
        },
      );
    seen.set(id, as);
  }
};

/** What going from `prev` to `next` changes, host by host (empty when nothing does). */
export const diffRoles = (prev: Roles | null, next: Roles): RoleChange[] => {
  const before = prev?.hosts ?? [];
  const hostOf = (hosts: HostRole[], nodeId: string | null) =>
    nodeId === null ? undefined : hosts.find((h) => h.nodeId === nodeId)?.hostIdx;
  const out: RoleChange[] = [];
  for (let k = 0; k < Math.max(before.length, next.hosts.length); k++) {
    const a = before[k];
    const b = next.hosts[k];
    const from = a?.nodeId ?? null;
    const to = b?.nodeId ?? null;
    const sFrom = a?.standby ?? [];
    const sTo = b?.standby ?? [];
    const standbyChanged = sFrom.join() !== sTo.join();
    if (from === to && !standbyChanged) continue;
    const parts: string[] = [];
    if (from !== to) {
      if (from === null) parts.push(`new host, node ${to}`);
      else if (to === null) parts.push(`removed (was node ${from})`);
      else {
        let s = `node ${from} → node ${to}`;
        const toWas = hostOf(before, to);
        const fromNow = hostOf(next.hosts, from);
        if (toWas !== undefined) s += ` (node ${to} was host ${toWas})`;
        if (fromNow !== undefined) s += ` (node ${from} is now host ${fromNow})`;
        parts.push(s);
      }
    }
    if (standbyChanged) parts.push(`standby [${sFrom.join(", ")}] → [${sTo.join(", ")}]`);
    out.push({
      hostIdx: k,
      from,
      to,
      ...(standbyChanged ? { standby: { from: sFrom, to: sTo } } : {}),
      text: `host ${k}: ${parts.join("; ")}`,
    });
  }
  return out;
};

/**
 * Before a pull restores host k's part onto the node now holding host k: a part written by a node that now
 * holds another host of the run means the roles were moved between live nodes since the checkpoint (swapped,
 * or shifted), and restoring by host index would give each of them another's state. That is refused
 * (HOST_MISMATCH) unless `allowRoleChanges`. A part written by a node that holds no host role now (it was
 * replaced, or a standby took over) restores by host index: that is what replacing it means.
 */
export const checkWriters = (
  roles: Roles,
  parts: HostPart[],
  id: string,
  allowRoleChanges: boolean,
): void => {
  if (allowRoleChanges) return;
  const moved: string[] = [];
  for (const h of roles.hosts) {
    const p = parts.find((x) => x.hostIdx === h.hostIdx);
    if (!p || p.nodeId === h.nodeId) continue;
    const now = roles.hosts.find((x) => x.nodeId === p.nodeId);
    if (now)
      moved.push(
        `host ${h.hostIdx}'s part was written by node ${p.nodeId}, now host ${now.hostIdx}; host ${h.hostIdx} is node ${h.nodeId}`,
      );
  }
  if (moved.length > 0)
    throw new FleetlinkError(
      "HOST_MISMATCH",
      `checkpoint ${id}: host roles moved between nodes since it was taken (${moved.join("; ")}). ` +
        "Restoring by host index would give these nodes each other's state: assign the roles as they were, " +
        "or pull with allowRoleChanges to restore by host index anyway.",
      { field: "hosts" },
    );
};
