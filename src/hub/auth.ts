import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { FleetlinkError } from "../protocol/errors.ts";

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
  const m = /^Bearer\s+(\S+)$/i.exec(h ?? "");
  if (!m) throw new FleetlinkError("UNAUTHORIZED", "missing Authorization: Bearer <token> header");
  return m[1]!;
};

/** A node authenticates with `Bearer <nodeId>.<credential>`. */
export const parseNodeToken = (token: string): { nodeId: string; credential: string } => {
  const dot = token.indexOf(".");
  if (dot <= 0) throw new FleetlinkError("UNAUTHORIZED", "node token must be <nodeId>.<credential>");
  return { nodeId: token.slice(0, dot), credential: token.slice(dot + 1) };
};
