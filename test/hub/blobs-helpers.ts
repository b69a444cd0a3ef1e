// A hub serving blobs over real sockets, and the blob HTTP API spoken by hand (the SDK clients are tested
// elsewhere): shared by the test/hub/blobs*.test.ts files.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHub, type Hub, type HubOptions } from "../../src/hub/server.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";
import { enrollNode } from "../helpers/node-http.ts";

export const TOKEN = "blob-admin-token";
export const ENROLL = "blob-enroll-token";
export const ADMIN = `Bearer ${TOKEN}`;

export const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");
export const bytes = (n: number): Buffer => randomBytes(n);

export interface BlobHub {
  hub: Hub;
  url: string;
  store: Store;
  dir: string;
}

/** A hub over `storeUrl` (a fresh SQLite file by default) with file:// blob storage in `dir` (fresh by default). */
export const startBlobHub = async (
  o: Partial<HubOptions> & { storeUrl?: string; dir?: string } = {},
  cleanups: (() => Promise<unknown>)[],
): Promise<BlobHub> => {
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), "fleetlink-blobs-"));
  if (!o.dir) cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const store = await openStore(o.storeUrl ?? `sqlite:${join(dir, "fleet.db")}`);
  const { storeUrl: _, dir: __, ...opts } = o;
  const hub = createHub({
    store,
    token: TOKEN,
    enrollToken: ENROLL,
    blobStore: `file://${dir}/objects`,
    ...opts,
  });
  cleanups.push(() => hub.close().then(() => store.close()));
  return { hub, url: await hub.listen(), store, dir };
};

/** A JSON answer, read loosely: the tests assert its fields. */
// biome-ignore lint/suspicious/noExplicitAny: answers are checked by the assertions that read them
export type Json = any;

export const json = async (res: Response) => ({ status: res.status, body: (await res.json()) as Json });

export const createRun = async (url: string): Promise<string> =>
  (await json(await fetch(`${url}/v1/runs`, { method: "POST", headers: { authorization: ADMIN } }))).body.run
    .id;

export const begin = async (url: string, path: string, auth: string, body: Record<string, unknown>) =>
  json(
    await fetch(`${url}${path}`, {
      method: "POST",
      headers: { authorization: auth, "content-type": "application/json" },
      body: JSON.stringify(body),
    }),
  );

export const putBytes = async (url: string, path: string, auth: string, offset: number, body: Uint8Array) =>
  json(
    await fetch(`${url}${path}`, {
      method: "PUT",
      headers: {
        authorization: auth,
        "content-type": "application/octet-stream",
        "upload-offset": String(offset),
      },
      body,
    }),
  );

/** Coordinator upload of `data` to `run`, whole. */
export const upload = async (url: string, run: string, data: Uint8Array) => {
  const b = await begin(url, `/v1/runs/${run}/blobs`, ADMIN, { sha256: sha(data), size: data.length });
  if (b.status === 200) return b.body;
  const p = await putBytes(url, `/v1/runs/${run}/blobs/uploads/${b.body.upload.id}`, ADMIN, 0, data);
  if (p.status !== 200 || !p.body.complete)
    throw new Error(`upload answered ${p.status} ${JSON.stringify(p.body)}`);
  return b.body;
};

/**
 * Pushes one instruction held while its node is offline: these nodes are enrolled, never connected, and the
 * sweep would otherwise end it NODE_UNAVAILABLE (and with it the node's right to read or upload the run's blobs)
 * whenever a loaded machine makes the test slower than a sweep.
 */
export const pushTo = async (url: string, run: string, dst: string, payload: unknown) => {
  const res = await fetch(`${url}/v1/runs/${run}/instructions`, {
    method: "POST",
    headers: { authorization: ADMIN, "content-type": "application/json" },
    body: JSON.stringify({ items: [{ dst, method: "m", payload, ttlMs: 60_000, holdWhileOffline: true }] }),
  });
  return json(res);
};

export const node = (url: string, name: string) => enrollNode(url, ENROLL, name);

/**
 * A PUT over a raw socket that declares `declared` bytes, sends `send`, then is cut (socket destroyed) or
 * waits for the answer. Resolves with the status and body when one came.
 */
export const rawPut = (
  url: string,
  path: string,
  auth: string,
  o: { offset: number; declared: number; send: Uint8Array; cut: boolean },
): Promise<{ status: number; body: Json } | null> =>
  new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request({
      host: u.hostname,
      port: u.port,
      method: "PUT",
      path,
      headers: {
        authorization: auth,
        "content-type": "application/octet-stream",
        "upload-offset": String(o.offset),
        "content-length": String(o.declared),
      },
    });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on("error", (e) => (o.cut ? resolve(null) : reject(e)));
    req.write(o.send, () => {
      if (o.cut) setTimeout(() => req.destroy(), 50);
    });
  });
