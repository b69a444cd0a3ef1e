import type { BlobClient } from "../blob/client.ts";
import type { BlobMode } from "../blob/codec.ts";
import type { HandlerBlobs } from "../blob/handle.ts";
import type { Handler } from "./handler.ts";

/**
 * Wraps a handler with the blob codec: its payload is decoded before it runs (blobs downloaded through the
 * cache while the instruction is in flight, so progress keeps its lease), and binary data in its result is
 * encoded after (uploaded to the instruction's run over `POST /v1/node/blobs` with the runId). A blob that
 * cannot be read or written fails the handler, so the coordinator gets an error reply saying why.
 */
export const withBlobs = (handler: Handler, client: BlobClient, mode: BlobMode): Handler => {
  return async (payload, ctx) => {
    const extra = { runId: ctx.runId };
    const blobs: HandlerBlobs = {
      put: (source, opts) => client.put(source, { extra, signal: opts?.signal ?? ctx.signal }),
      get: (blob) => client.handle(blob),
    };
    const input = await client.decode(payload, { mode, signal: ctx.signal });
    const result = await handler(input, { ...ctx, blobs });
    return client.encode(result, { extra, root: "result" });
  };
};
