import { type BlobInfo, collectBlobRefs, MAX_REFS_PER_PAYLOAD, mayHoldRefs } from "../../protocol/blobs.ts";
import { FleetlinkError, invalid } from "../../protocol/errors.ts";
import { newId } from "../../protocol/ids.ts";
import type { Instruction } from "../../protocol/types.ts";
import type { SqlConn } from "../dialect.ts";
import type { Row } from "../rows.ts";
import type { NewReply, StoreReplyResult } from "../types.ts";

/** The owner of the ref an uploader holds: one per uploader, whatever it uploads. */
export const uploaderOwner = (nodeId: string | null): string => `upload:${nodeId ?? "coordinator"}`;

/**
 * Keeps blob `sha256` from being collected by this transaction's commit, if it exists: clears its orphan mark
 * with an UPDATE, which row-locks it on PostgreSQL (SQLite's write lock covers the transaction). A collect that
 * deletes it either committed first (no row: false) or re-checks its guard on the row this wrote, finds the
 * mark gone and keeps it. `access` is an extra SQL condition (parameters $2…) that must hold too.
 */
export const holdBlob = async (
  c: SqlConn,
  sha256: string,
  access = "",
  params: readonly unknown[] = [],
): Promise<Row | undefined> => {
  const [b] = await c.q(
    `UPDATE blobs SET orphaned_at = NULL WHERE sha256 = $1 ${access ? `AND ${access}` : ""} RETURNING *`,
    [sha256, ...params],
  );
  return b;
};

/** Adds a ref (the caller holds the blob, see holdBlob). An existing ref of the same owner is kept. */
export const addRef = async (
  c: SqlConn,
  r: { sha256: string; runId: string; owner: string; kind: string; nodeId: string | null },
  upgrade = false,
): Promise<void> => {
  await c.q(
    `INSERT INTO blob_refs (sha256, run_id, owner, kind, node_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (sha256, owner, run_id) DO ${upgrade ? "UPDATE SET kind = EXCLUDED.kind" : "NOTHING"}`,
    [r.sha256, r.runId, r.owner, r.kind, r.nodeId, c.now],
  );
};

type Ref = BlobInfo & { path: string };

/**
 * The blob references of an encoded payload. The ref-less hot path costs a byte search or two (`mayHoldRefs`);
 * a payload that is not JSON holds no references (payloads may be any bytes). A malformed `$blob` object, or
 * too many references, is refused naming the field (`<prefix>.payload.x`).
 */
export const payloadRefs = (payload: Uint8Array | undefined, prefix: string): Ref[] => {
  if (!payload || payload.byteLength === 0 || !mayHoldRefs(payload)) return [];
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString("utf8"));
  } catch {
    return [];
  }
  const { refs, bad } = collectBlobRefs(value, "payload");
  if (bad !== null)
    throw invalid(
      `${prefix}.${bad}`,
      'a "$blob" object must be { "$blob": "sha256:<64 hex>", "size": <bytes> }',
    );
  if (refs.length > MAX_REFS_PER_PAYLOAD)
    throw invalid(`${prefix}.payload`, `holds more than ${MAX_REFS_PER_PAYLOAD} blob references`);
  return refs;
};

/** A reference's size that is not its blob's (a client that miscounts, or lies, would mislead its readers). */
const sizeMismatch = (sha256: string, refSize: number, blobSize: number): string =>
  `references sha256:${sha256} with size ${refSize}, but that blob has ${blobSize} bytes`;

/** Blobs in a stable order, so transactions lock blob rows in one order (no deadlock between two pushes). */
const bySha = <T extends { sha256: string }>(xs: T[]): T[] =>
  xs.sort((a, b) => (a.sha256 < b.sha256 ? -1 : a.sha256 > b.sha256 ? 1 : 0));

/** A run may reference a blob it has a ref to, of any kind (uploaded to it, or in a message of it). */
const RUN_MAY_USE = "EXISTS (SELECT 1 FROM blob_refs r WHERE r.sha256 = blobs.sha256 AND r.run_id = $2)";
/** A node may reference a blob it has a ref to, of any kind (sent it, uploaded it, claimed it, replied it). */
const NODE_MAY_USE = "EXISTS (SELECT 1 FROM blob_refs r WHERE r.sha256 = blobs.sha256 AND r.node_id = $2)";

/**
 * Checks and records the references of a push's instructions, inside the push's transaction: each blob must
 * exist and the run may reference it, else BLOB_NOT_FOUND naming the first field that references it (and the
 * transaction rolls back: nothing of the push is stored). Each referenced blob is held (see holdBlob) and gets
 * an 'instruction' ref owned by the instruction, for its node.
 */
export const refPush = async (c: SqlConn, runId: string, records: readonly Instruction[]): Promise<void> => {
  const uses: { sha256: string; size: number; field: string; ins: Instruction }[] = [];
  records.forEach((ins, i) => {
    for (const r of payloadRefs(ins.payload, `items[${i}]`))
      uses.push({ sha256: r.sha256, size: r.size, field: `items[${i}].${r.path}`, ins });
  });
  if (uses.length === 0) return;
  /** Size of each blob held so far. */
  const held = new Map<string, number>();
  for (const u of bySha([...uses])) {
    if (!held.has(u.sha256)) {
      const b = await holdBlob(c, u.sha256, RUN_MAY_USE, [runId]);
      if (!b)
        throw new FleetlinkError(
          "BLOB_NOT_FOUND",
          `sha256:${u.sha256} is not a blob run ${runId} may reference (upload it to the run first)`,
          { field: uses.find((x) => x.sha256 === u.sha256)!.field },
        );
      held.set(u.sha256, Number(b.size));
    }
    // Checked only once the run may reference the blob: a blob it may not use is not found, size unsaid.
    const size = held.get(u.sha256)!;
    if (u.size !== size) throw invalid(u.field, sizeMismatch(u.sha256, u.size, size));
    await addRef(c, { sha256: u.sha256, runId, owner: u.ins.id, kind: "instruction", nodeId: u.ins.dst });
  }
};

/** Refs to record once the replies are stored: by the index of the reply in the batch. */
export type PendingReplyRefs = Map<number, { sha256: string; runId: string; nodeId: string }[]>;

/**
 * Checks the references of replies about to be stored, inside the storing transaction. A reply whose payload
 * references a blob its node may not reference (or holds a malformed reference) is stored as an error reply
 * BLOB_NOT_FOUND instead, payload empty: the coordinator learns of it, never silence. Returns the items to
 * store (a reply with refs gets its id now, to own its refs) and the refs to add for those that get stored.
 */
export const checkReplyRefs = async (
  c: SqlConn,
  items: readonly NewReply[],
  skip: readonly (StoreReplyResult | null)[],
): Promise<{ items: NewReply[]; refs: PendingReplyRefs }> => {
  const out = [...items];
  const refs: PendingReplyRefs = new Map();
  const uses: { sha256: string; size: number; path: string; i: number }[] = [];
  const refuse = (i: number, message: string) => {
    out[i] = {
      ...out[i]!,
      payload: new Uint8Array(0),
      error: { code: "FLEETLINK_E_BLOB_NOT_FOUND", message },
    };
    refs.delete(i);
  };
  items.forEach((r, i) => {
    if (skip[i] || r.error) return;
    try {
      for (const ref of payloadRefs(r.payload, "reply"))
        uses.push({ sha256: ref.sha256, size: ref.size, path: ref.path, i });
    } catch (e) {
      refuse(i, (e as Error).message);
    }
  });
  /** The blob's size if the node may reference it, else null; by blob and node. */
  const access = new Map<string, number | null>();
  for (const u of bySha(uses)) {
    const r = items[u.i]!;
    if (out[u.i]!.error) continue;
    const key = `${u.sha256} ${r.nodeId}`;
    if (!access.has(key)) {
      const b = await holdBlob(c, u.sha256, NODE_MAY_USE, [r.nodeId]);
      access.set(key, b ? Number(b.size) : null);
    }
    const size = access.get(key);
    if (size === null || size === undefined) {
      refuse(
        u.i,
        `reply ${u.path} references sha256:${u.sha256}, which node ${r.nodeId} may not reference (it was not sent it and did not upload it)`,
      );
      continue;
    }
    if (u.size !== size) {
      refuse(u.i, `reply ${u.path} ${sizeMismatch(u.sha256, u.size, size)}`);
      continue;
    }
    out[u.i] = { ...out[u.i]!, id: out[u.i]!.id ?? newId() };
    const list = refs.get(u.i) ?? [];
    list.push({ sha256: u.sha256, runId: r.runId, nodeId: r.nodeId });
    refs.set(u.i, list);
  }
  return { items: out, refs };
};

/** Adds the refs of the replies that were stored (not duplicates), owned by each reply. */
export const addReplyRefs = async (
  c: SqlConn,
  refs: PendingReplyRefs,
  results: readonly (StoreReplyResult | null)[],
): Promise<void> => {
  for (const [i, list] of refs) {
    const res = results[i];
    if (!res?.ok || res.duplicate) continue;
    for (const r of list) await addRef(c, { ...r, owner: res.reply.id, kind: "reply" });
  }
};
