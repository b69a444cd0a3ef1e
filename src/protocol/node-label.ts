// How people read node ids; imports nothing, so the CLI's command modules may load it at start.
/**
 * A node id shortened for people: `…` and its last 8 hex digits. The first digits of a UUIDv7 are its creation
 * time, so nodes enrolled together share a prefix; the last ones are random.
 */
export const shortId = (id: string): string => `…${id.slice(-8)}`;

/** A node as people read it: `worker-1 (…a1b2c3d4)`, or the bare id when its name is not known. */
export const nodeLabel = (id: string, name: string | null | undefined): string =>
  name ? `${name} (${shortId(id)})` : id;
