import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { FleetlinkError } from "../../protocol/errors.ts";
import { isId } from "../../protocol/ids.ts";

/** Node credentials are 256 random bits, so a plain SHA-256 is enough to store them (no password stretching). */
export const newCredential = (): string => randomBytes(32).toString("base64url");
export const hashCredential = (c: string): string => createHash("sha256").update(c).digest("hex");

export const sameSecret = (a: string, b: string): boolean => {
  const x = createHash("sha256").update(a).digest();
  const y = createHash("sha256").update(b).digest();
  return timingSafeEqual(x, y);
};

export const bearer = (header: string | string[] | undefined): string => {
  const h = Array.isArray(header) ? header[0] : header;
  const m = /^Bearer\s+(\S{1,1024})$/i.exec(h ?? "");
  if (!m) throw new FleetlinkError("UNAUTHORIZED", "missing Authorization: Bearer <token> header");
  return m[1]!;
};

/** A node authenticates with `Bearer <nodeId>.<credential>`. */
export const parseNodeToken = (token: string): { nodeId: string; credential: string } => {
  const dot = token.indexOf(".");
  if (dot <= 0) throw new FleetlinkError("UNAUTHORIZED", "node token must be <nodeId>.<credential>");
  return { nodeId: token.slice(0, dot), credential: token.slice(dot + 1) };
};

/** Stored enrollment tokens read `fle_<tokenId>.<secret>`; only the secret's hash is kept in the store. */
const STORED_PREFIX = "fle_";
export const formatEnrollToken = (id: string, secret: string): string => `${STORED_PREFIX}${id}.${secret}`;
export const parseEnrollToken = (token: string): { id: string; secret: string } | null => {
  if (!token.startsWith(STORED_PREFIX)) return null;
  const dot = token.indexOf(".");
  const id = token.slice(STORED_PREFIX.length, dot);
  return dot > 0 && isId(id) ? { id, secret: token.slice(dot + 1) } : null;
};

/** A random secret for tokens the hub generates. */
export const newSecret = (): string => randomBytes(24).toString("base64url");

/** Stored principal tokens read `flt_<principalId>.<secret>`; only the secret's hash is kept in the store. */
const PRINCIPAL_PREFIX = "flt_";
export const formatPrincipalToken = (id: string, secret: string): string =>
  `${PRINCIPAL_PREFIX}${id}.${secret}`;
export const parsePrincipalToken = (token: string): { id: string; secret: string } | null => {
  if (!token.startsWith(PRINCIPAL_PREFIX)) return null;
  const dot = token.indexOf(".");
  const id = token.slice(PRINCIPAL_PREFIX.length, dot);
  return dot > 0 && isId(id) ? { id, secret: token.slice(dot + 1) } : null;
};
