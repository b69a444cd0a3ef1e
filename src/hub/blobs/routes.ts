// The blob HTTP API (docs/blobs.md): begin, send bytes, status and download, for a run's coordinator (an
// admin or coordinator token, run-scoped) and for nodes (their credential, as the HTTP node API). Credentials are checked in
// onRequest, before any body is read; upload bodies are streamed to storage, never buffered whole.
import { Readable, Transform } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { isSha256 } from "../../protocol/blobs.ts";
import { FleetlinkError, invalid } from "../../protocol/errors.ts";
import { isId } from "../../protocol/ids.ts";
import type { Store } from "../../store/store.ts";
import type { BlobReader, BlobRecord } from "../../store/types.ts";
import { authenticateNode } from "../delivery/upgrade.ts";
import { blobRouteDocs } from "./route-docs.ts";
import type { BlobStorage } from "./storage.ts";
import type { BlobObserver, BlobUploads, Uploader } from "./uploads.ts";

export interface BlobRoutesContext {
  store: Store;
  storage: BlobStorage;
  uploads: BlobUploads;
  /** Serve `GET /v1/node/blobs/:sha256/url` (S3 storage only). */
  presign: boolean;
  /** Lifetime of a presigned URL, in seconds. */
  presignTtlS: number;
  observe?: BlobObserver;
}

const notFound = () =>
  new FleetlinkError("BLOB_NOT_FOUND", "no such blob, or the caller may not read it", { field: "sha256" });

/** `bytes=<start>-` or `bytes=<start>-<end>`; anything else is ignored (the whole blob, as RFC 9110 allows). */
const parseRange = (h: string | undefined): { start: number; end?: number } | null => {
  const m = /^bytes=(\d{1,16})-(\d{0,16})$/.exec(h ?? "");
  if (!m) return null;
  return { start: Number(m[1]), ...(m[2] ? { end: Number(m[2]) } : {}) };
};

const sendBlob = async (
  ctx: BlobRoutesContext,
  req: FastifyRequest,
  reply: FastifyReply,
  blob: BlobRecord,
) => {
  reply
    .header("content-type", "application/octet-stream")
    .header("etag", `"${blob.sha256}"`)
    .header("accept-ranges", "bytes")
    // Content-addressed: the bytes under this name never change.
    .header("cache-control", "private, max-age=31536000, immutable");
  const range = parseRange(req.headers.range);
  let start = 0;
  let end = blob.size - 1;
  if (range) {
    if (range.start >= blob.size || (range.end !== undefined && range.end < range.start)) {
      const e = invalid("range", `${req.headers.range} is outside the blob's ${blob.size} bytes`);
      return reply
        .code(416)
        .header("content-range", `bytes */${blob.size}`)
        .header("content-type", "application/json")
        .send({ error: e.toJSON() });
    }
    start = range.start;
    end = Math.min(range.end ?? end, end);
    reply.code(206).header("content-range", `bytes ${start}-${end}/${blob.size}`);
  }
  reply.header("content-length", String(end - start + 1 < 0 ? 0 : end - start + 1));
  // HEAD: an empty stream, because Fastify's HEAD handler sets Content-Length 0 for an empty send.
  if (req.method === "HEAD") return reply.send(Readable.from([]));
  if (blob.size === 0) return reply.send();
  const body = await ctx.storage.read(blob.objectKey, start, end);
  const counted = new Transform({
    transform(c: Buffer, _e, cb) {
      ctx.observe?.downloadedBytes?.(c.length);
      cb(null, c);
    },
  });
  body.once("error", (e) => counted.destroy(e));
  // A client gone midway ends the read from storage too.
  counted.once("close", () => body.destroy());
  return reply.send(body.pipe(counted));
};

export const registerBlobRoutes = (app: FastifyInstance, ctx: BlobRoutesContext): void => {
  const { store, uploads } = ctx;
  // The body of a PUT reaches the handler as the request stream itself: not buffered, not limited by
  // bodyLimit (the handler limits it to the blob's remaining bytes).
  app.addContentTypeParser("application/octet-stream", (_req, payload, done) => done(null, payload));
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  // The handlers check their input and name the field (uploads.ts); the schemas only document the routes.
  app.setValidatorCompiler(() => () => true);
  const R = blobRouteDocs("run");
  const N = blobRouteDocs("node");

  // The access hook authorizes (a tenant-scoped caller's `:run` must be of its tenant); uploads drive, reads read.
  const drive = { config: { access: "drive" } } as const;
  const read = { config: { access: "read" } } as const;
  const nodesOf = new WeakMap<FastifyRequest, string>();
  const node = {
    config: { access: "node" as const },
    onRequest: async (req: FastifyRequest) => {
      nodesOf.set(req, (await authenticateNode(store, req.headers.authorization)).node.id);
    },
  };
  const runOf = (req: FastifyRequest) => (req.params as { run: string }).run;
  const nodeOf = (req: FastifyRequest) => nodesOf.get(req)!;
  const small = { bodyLimit: 4096 } as const;

  const put = async (req: FastifyRequest, reply: FastifyReply, who: Uploader) => {
    const { id } = req.params as { id: string };
    const u = await uploads.check(id, who, req.headers["upload-offset"], req.headers["content-length"]);
    // No body at all (an empty blob, or an empty PUT to learn nothing new): an empty stream.
    const body = (req.body as Readable | undefined) ?? Readable.from([]);
    try {
      return await uploads.put(u, body);
    } catch (e) {
      if (e instanceof FleetlinkError && e.kind === "RATE_LIMITED") reply.header("retry-after", "1");
      throw e;
    }
  };
  const status = async (req: FastifyRequest, who: Uploader) => {
    const { id } = req.params as { id: string };
    const u = await uploads.find(id, who);
    return { id: u.id, offset: u.offset, size: u.size, complete: false };
  };
  const download = async (req: FastifyRequest, reply: FastifyReply, reader: BlobReader) => {
    const { sha256 } = req.params as { sha256: string };
    if (!isSha256(sha256)) throw invalid("sha256", "must be 64 lower-case hex digits");
    const blob = await store.readableBlob(sha256, reader);
    if (!blob) throw notFound();
    return sendBlob(ctx, req, reply, blob);
  };
  // Any other content type would be parsed (and buffered) by Fastify: refused before the body is read.
  const octets = async (req: FastifyRequest) => {
    const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    if (type !== "application/octet-stream" && req.headers["content-length"] !== "0" && type !== "")
      throw invalid("content-type", "send the bytes as application/octet-stream");
  };
  // A refused PUT (409, 400, 413, 429, …) is answered before its body was read to the end: close the connection
  // after the answer rather than leave the client streaming (or the server draining) the rest.
  const closeOnError = async (_req: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    if (reply.statusCode >= 400) reply.header("connection", "close");
    return payload;
  };

  // A run's coordinator (admin or coordinator; readers may download).
  app.post("/v1/runs/:run/blobs", { ...drive, ...small, schema: R.begin }, async (req, reply) => {
    const r = await uploads.begin(req.body, { runId: runOf(req), nodeId: null });
    return reply.code(r.status).send(r.answer);
  });
  app.put(
    "/v1/runs/:run/blobs/uploads/:id",
    { ...drive, preParsing: octets, onSend: closeOnError, schema: R.put },
    (req, reply) => put(req, reply, { runId: runOf(req), nodeId: null }),
  );
  app.get("/v1/runs/:run/blobs/uploads/:id", { ...drive, ...small, schema: R.status }, (req) =>
    status(req, { runId: runOf(req), nodeId: null }),
  );
  app.get("/v1/runs/:run/blobs/:sha256", { ...read, ...small, schema: R.download }, (req, reply) =>
    download(req, reply, { runId: runOf(req) }),
  );

  // Nodes (their credential).
  app.post("/v1/node/blobs", { ...node, ...small, schema: N.begin }, async (req, reply) => {
    const runId = (req.body as { runId?: unknown } | null)?.runId;
    if (!isId(runId)) throw invalid("runId", "must be the id of the run whose instruction the blob is for");
    const r = await uploads.begin(req.body, { runId, nodeId: nodeOf(req) });
    return reply.code(r.status).send(r.answer);
  });
  app.put(
    "/v1/node/blobs/uploads/:id",
    { ...node, preParsing: octets, onSend: closeOnError, schema: N.put },
    (req, reply) => put(req, reply, { nodeId: nodeOf(req) }),
  );
  app.get("/v1/node/blobs/uploads/:id", { ...node, ...small, schema: N.status }, (req) =>
    status(req, { nodeId: nodeOf(req) }),
  );
  app.get("/v1/node/blobs/:sha256", { ...node, ...small, schema: N.download }, (req, reply) =>
    download(req, reply, { nodeId: nodeOf(req) }),
  );
  app.get("/v1/node/blobs/:sha256/url", { ...node, ...small, schema: N.url }, async (req) => {
    const { sha256 } = req.params as { sha256: string };
    if (!isSha256(sha256)) throw invalid("sha256", "must be 64 lower-case hex digits");
    if (!ctx.presign)
      throw new FleetlinkError(
        "CONFLICT",
        "presigned downloads are not enabled on this hub (serve --blob-presign)",
      );
    const blob = await store.readableBlob(sha256, { nodeId: nodeOf(req) });
    if (!blob) throw notFound();
    const expiresAt = Date.now() + ctx.presignTtlS * 1000;
    return { url: await ctx.storage.presign(blob.objectKey, ctx.presignTtlS), expiresAt };
  });
};
