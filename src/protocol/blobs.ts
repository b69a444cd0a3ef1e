/**
 * Blobs: content-addressed byte objects that payloads reference instead of carrying (docs/blobs.md).
 *
 * In a payload (a JSON value) two reserved object shapes stand for bytes:
 * - `{ "$bytes": "<base64>" }`: bytes carried inline (up to the inline threshold; the SDK decides);
 * - `{ "$blob": "sha256:<64 hex>", "size": <bytes> }`: a reference to a blob held in the hub's object storage.
 * An object with a `$blob` or `$bytes` key is always read as one of these: the SDK refuses a user object that
 * has such a key, naming its path. The hub and the store look only at `$blob` references (to check access and
 * keep the blob alive while a live message references it); `$bytes` is the SDKs' business.
 */

/** The key of a blob reference object. */
export const BLOB_KEY = "$blob";
/** The key of an inline-bytes object. */
export const BYTES_KEY = "$bytes";
/** Prefix of a reference's value. */
export const SHA256_PREFIX = "sha256:";

/** A reference as it appears in a payload. */
export interface BlobRefJson {
  $blob: string;
  size: number;
}

/** A blob as the hub describes it. */
export interface BlobInfo {
  /** Lower-case hex sha256 of the bytes. */
  sha256: string;
  size: number;
}

/** Bytes up to this size travel inline (`$bytes`, base64) by default; larger ones as blobs. (256 KiB) */
export const DEFAULT_INLINE_BYTES = 256 * 1024;
/** Largest blob a hub accepts by default, in bytes (`serve --max-blob-size`). (8 GiB) */
export const DEFAULT_MAX_BLOB_BYTES = 8 * 1024 ** 3;
/** Bytes of distinct blobs one run may hold by default (`serve --blob-run-quota`). (64 GiB) */
export const DEFAULT_RUN_BLOB_QUOTA_BYTES = 64 * 1024 ** 3;
/** How long a blob outlives its last live reference by default, in ms. (10 minutes) */
export const DEFAULT_BLOB_GRACE_MS = 10 * 60 * 1000;
/** An unfinished upload with no progress for this long is abandoned and its bytes removed, in ms. (1 hour) */
export const DEFAULT_UPLOAD_IDLE_MS = 60 * 60 * 1000;
/** References one payload may carry. */
export const MAX_REFS_PER_PAYLOAD = 1024;

/** Request header of an upload PUT: the byte offset its body starts at (as in the tus protocol). */
export const UPLOAD_OFFSET_HEADER = "upload-offset";

const HEX64 = /^[0-9a-f]{64}$/;
/** True for a lower-case hex sha256. */
export const isSha256 = (s: unknown): s is string => typeof s === "string" && HEX64.test(s);

/** The reference object for a blob. */
export const blobRef = (b: BlobInfo): BlobRefJson => ({ $blob: `${SHA256_PREFIX}${b.sha256}`, size: b.size });

/** The blob a value references, if it is a well-formed reference object; null otherwise. */
export const readBlobRef = (v: unknown): BlobInfo | null => {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  const ref = o[BLOB_KEY];
  if (typeof ref !== "string" || !ref.startsWith(SHA256_PREFIX)) return null;
  const sha256 = ref.slice(SHA256_PREFIX.length);
  if (!isSha256(sha256) || !Number.isSafeInteger(o.size) || (o.size as number) < 0) return null;
  return { sha256, size: o.size as number };
};

const MARKER = new TextEncoder().encode(`"${BLOB_KEY}"`);
const ESCAPE = new TextEncoder().encode("\\u");

/**
 * Cheap pre-check on an encoded payload: false means it surely holds no reference (no parse needed). JSON may
 * spell the key with escapes (`"\u0024blob"`), which a byte search cannot see: a payload with any `\u`
 * escape is parsed to be sure.
 */
export const mayHoldRefs = (payload: Uint8Array): boolean => {
  const b = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  return b.indexOf(MARKER) >= 0 || b.indexOf(ESCAPE) >= 0;
};

/**
 * The blob references in a JSON value, each distinct (sha256, size) once, in order of first appearance, with the
 * path of its first appearance (`payload.model`, `payload[2]`): a second appearance of a blob with another size
 * is kept, so that it can be refused. A `$blob` key whose object is not a well-formed reference is reported as
 * `bad` (its path), so callers refuse it naming the field. Iterative: any depth is safe.
 */
export const collectBlobRefs = (
  value: unknown,
  root = "payload",
): { refs: (BlobInfo & { path: string })[]; bad: string | null } => {
  const refs = new Map<string, BlobInfo & { path: string }>();
  const stack: [unknown, string][] = [[value, root]];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}[${i}]`]);
      continue;
    }
    if (Object.hasOwn(v, BLOB_KEY)) {
      const ref = readBlobRef(v);
      if (!ref) return { refs: [...refs.values()], bad: path };
      const key = `${ref.sha256} ${ref.size}`;
      if (!refs.has(key)) refs.set(key, { ...ref, path });
      continue;
    }
    const entries = Object.entries(v);
    for (let i = entries.length - 1; i >= 0; i--) stack.push([entries[i]![1], `${path}.${entries[i]![0]}`]);
  }
  return { refs: [...refs.values()], bad: null };
};

/** Answer to starting an upload (`POST …/blobs`). */
export type BeginUploadAnswer =
  | { state: "present"; blob: BlobInfo }
  | { state: "uploading"; blob: BlobInfo; upload: UploadStatus };

/** Where an unfinished upload stands (`GET …/blobs/uploads/:id`, and after each PUT). */
export interface UploadStatus {
  id: string;
  /** Bytes received and made durable so far: the next PUT starts here. */
  offset: number;
  size: number;
  /** True once the bytes were verified and the blob is visible. */
  complete: boolean;
}
