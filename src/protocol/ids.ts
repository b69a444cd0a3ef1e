import { v7 } from "uuid";

/** Time-ordered ids (UUIDv7): sortable by creation time, unique across processes. */
export const newId = (): string => v7();

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isId = (s: unknown): s is string => typeof s === "string" && UUID_RE.test(s);
