import { BLOB_KEY, type BlobInfo, collectBlobRefs, SHA256_PREFIX } from "../../protocol/blobs.ts";

/** A payload as the dashboard shows it: decoded when it can be, cut to the preview, blobs named not fetched. */
export interface PayloadView {
  /** The payload's full size in bytes. */
  bytes: number;
  /** `json`: parsed (shown re-indented); `text`: UTF-8 that is cut or not JSON; `binary`: neither. */
  kind: "empty" | "json" | "text" | "binary";
  /** What is shown (null for binary), at most the preview's length in characters. */
  text: string | null;
  /** The payload is larger than what is shown. */
  truncated: boolean;
  /** Blob references found in what was read (hash and size; the blob itself is not read). */
  blobs: BlobInfo[];
}

/** Payloads are JSON (protocol/wire.ts encodePayload); other bytes are possible and shown as binary. */
const utf8 = new TextDecoder("utf-8", { fatal: true });
const REF = new RegExp(
  `"\\${BLOB_KEY}"\\s*:\\s*"${SHA256_PREFIX}([0-9a-f]{64})"\\s*,\\s*"size"\\s*:\\s*(\\d+)`,
  "g",
);
const MAX_BLOBS_SHOWN = 32;

/** Control characters other than tab, newline and carriage return: bytes that are not text. */
const isControl = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return true;
  }
  return false;
};

/** The bytes as UTF-8 text; a preview cut inside a character loses that character's bytes. null: not text. */
const decode = (b: Uint8Array, cut: boolean): string | null => {
  for (let drop = 0; drop <= (cut ? 3 : 0); drop++) {
    try {
      const text = utf8.decode(b.subarray(0, b.byteLength - drop));
      return isControl(text) ? null : text;
    } catch {
      // Try with one byte fewer.
    }
  }
  return null;
};

/** `preview` holds the payload's first bytes (all of them when `bytes` is no larger); `limit` bounds the text. */
export const payloadView = (preview: Uint8Array, bytes: number, limit: number): PayloadView => {
  if (bytes === 0) return { bytes, kind: "empty", text: null, truncated: false, blobs: [] };
  const cut = preview.byteLength < bytes;
  const text = decode(preview, cut);
  if (text === null) return { bytes, kind: "binary", text: null, truncated: cut, blobs: [] };
  if (!cut) {
    try {
      const value: unknown = JSON.parse(text);
      // The store's own walk (any depth, each blob once); the page names at most MAX_BLOBS_SHOWN of them.
      const blobs: BlobInfo[] = collectBlobRefs(value)
        .refs.slice(0, MAX_BLOBS_SHOWN)
        .map(({ sha256, size }) => ({ sha256, size }));
      const shown = JSON.stringify(value, null, 2);
      return {
        bytes,
        kind: "json",
        text: shown.slice(0, limit),
        truncated: shown.length > limit,
        blobs,
      };
    } catch {
      // Not JSON: shown as text.
    }
  }
  const blobs: BlobInfo[] = [];
  for (const m of text.matchAll(REF)) {
    if (blobs.length >= MAX_BLOBS_SHOWN) break;
    blobs.push({ sha256: m[1]!, size: Number(m[2]) });
  }
  return { bytes, kind: "text", text: text.slice(0, limit), truncated: cut || text.length > limit, blobs };
};
