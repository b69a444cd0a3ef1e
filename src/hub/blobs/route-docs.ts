// The blob routes as the OpenAPI document shows them (docs/blobs.md has the prose). Bodies are checked by the
// handlers themselves (uploads.ts), which name the field; these schemas describe, they do not validate.
import { Type } from "@sinclair/typebox";
import type { ErrorName } from "../../protocol/errors.ts";
import { routeSchema } from "../../protocol/route-doc.ts";

const TAG = ["blobs"];
const SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const ID = "0190f5a2-7c4e-7000-8000-000000000001";

const Blob = Type.Object({ sha256: Type.String(), size: Type.Integer() }, { title: "BlobInfo" });
const Status = Type.Object(
  { id: Type.String(), offset: Type.Integer(), size: Type.Integer(), complete: Type.Boolean() },
  { title: "UploadStatus", examples: [{ id: ID, offset: 8388608, size: 104857600, complete: false }] },
);
const Present = Type.Object(
  { state: Type.Literal("present"), blob: Blob },
  { title: "BlobPresent", examples: [{ state: "present", blob: { sha256: SHA, size: 4 } }] },
);
const Uploading = Type.Object(
  { state: Type.Literal("uploading"), blob: Blob, upload: Status },
  {
    title: "BlobUploading",
    examples: [
      {
        state: "uploading",
        blob: { sha256: SHA, size: 4 },
        upload: { id: ID, offset: 0, size: 4, complete: false },
      },
    ],
  },
);
const Bytes = Type.Unsafe<string>({ type: "string", format: "binary", examples: ["<bytes>"] });
const Url = Type.Object(
  { url: Type.String(), expiresAt: Type.Integer() },
  { examples: [{ url: "https://bucket.s3…/blobs/9f/…?X-Amz-Signature=…", expiresAt: 1767225600000 }] },
);

const beginBody = (node: boolean) =>
  Type.Object(
    {
      sha256: Type.String({ description: "sha256 of the bytes, 64 lower-case hex digits" }),
      size: Type.Integer({ minimum: 0 }),
      ...(node ? { runId: Type.String({ description: "the run whose instruction the blob is for" }) } : {}),
    },
    { examples: [{ sha256: SHA, size: 4, ...(node ? { runId: ID } : {}) }] },
  );

const BEGIN_ERRORS: ErrorName[] = ["RUN_NOT_FOUND", "RUN_FINISHED", "QUOTA_EXCEEDED"];
const PUT_ERRORS: ErrorName[] = [
  "BLOB_NOT_FOUND",
  "CONFLICT",
  "PAYLOAD_TOO_LARGE",
  "RATE_LIMITED",
  "OBJECT_STORE_UNAVAILABLE",
];

export const blobRouteDocs = (who: "run" | "node") => {
  const auth = who === "run" ? ("admin" as const) : ("node" as const);
  const whom = who === "run" ? "a run's coordinator" : "a node";
  return {
    begin: routeSchema({
      summary: "Begin (or resume) a blob upload",
      description: `Starts an upload for ${whom}, or answers 200 \`present\` when the blob exists (nothing to send). See docs/blobs.md.`,
      tags: TAG,
      auth,
      errors: who === "node" ? [...BEGIN_ERRORS] : BEGIN_ERRORS,
      body: beginBody(who === "node"),
      response: { 200: Present, 201: Uploading },
    }),
    put: routeSchema({
      summary: "Send blob bytes",
      description:
        "`application/octet-stream` bytes from the `Upload-Offset` header on (the durable offset). " +
        "`complete: true` once all bytes arrived and matched the sha256.",
      tags: TAG,
      auth,
      errors: PUT_ERRORS,
      response: { 200: Status },
    }),
    status: routeSchema({
      summary: "Status of a blob upload",
      description: "Where an unfinished upload stands: send the next bytes from `offset`.",
      tags: TAG,
      auth,
      errors: ["BLOB_NOT_FOUND"],
      response: { 200: Status },
    }),
    download: routeSchema({
      summary: "Download a blob",
      description:
        "The blob's bytes; `Range: bytes=<start>-` answers 206. 404 when missing or not readable by the caller.",
      tags: TAG,
      auth,
      errors: ["BLOB_NOT_FOUND", "OBJECT_STORE_UNAVAILABLE"],
      response: { 200: Bytes, 206: Bytes },
    }),
    url: routeSchema({
      summary: "A presigned download URL for a blob",
      description:
        "S3 blob storage with `blobPresign` only (409 otherwise): the URL GETs the bytes until `expiresAt`.",
      tags: TAG,
      auth,
      errors: ["BLOB_NOT_FOUND", "CONFLICT"],
      response: { 200: Url },
    }),
  };
};
