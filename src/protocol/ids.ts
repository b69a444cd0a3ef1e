import { v7 } from "uuid";

/** Time-ordered ids (UUIDv7): sortable by creation time, unique across processes. */
export const newId = (): string => v7();

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isId = (s: unknown): s is string => typeof s === "string" && UUID_RE.test(s);

/**
 * A node id shortened for people: `…` and its last 8 hex digits. The first digits of a UUIDv7 are its creation
 * time, so nodes enrolled together share a prefix; the last ones are random.
 */
export const shortId = (id: string): string => `…${id.slice(-8)}`;

/** A node as people read it: `worker-1 (…a1b2c3d4)`, or the bare id when its name is not known. */
export const nodeLabel = (id: string, name: string | null | undefined): string =>
  name ? `${name} (${shortId(id)})` : id;
