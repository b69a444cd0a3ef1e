// Authentication comes first, from headers alone: an unauthenticated request is refused before its path
// parameters are validated or its body is read and parsed, so a multi-MB body costs the hub no parsing.
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createHub, type Hub } from "../../src/hub/server.ts";
import { newId } from "../../src/protocol/ids.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";

const ADMIN = "auth-first-admin";

/** One request over a real socket; resolves with the status and the error code of the answer. */
const send = (url: string, path: string, body: Buffer, auth?: string) =>
  new Promise<{ status: number; code?: string }>((resolve, reject) => {
    const req = request(
      `${url}${path}`,
      {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-length": String(body.length),
          ...(auth ? { authorization: auth } : {}),
        },
      },
      (res) => {
        let text = "";
        res.on("data", (d: Buffer) => {
          text += d;
        });
        res.on("end", () => {
          let code: string | undefined;
          try {
            code = JSON.parse(text).error?.code;
          } catch {}
          resolve({ status: res.statusCode ?? 0, code });
        });
      },
    );
    // The hub may answer and close before the whole body is sent: the answer is what counts.
    req.on("error", (e) =>
      (e as NodeJS.ErrnoException).code === "EPIPE" || (e as NodeJS.ErrnoException).code === "ECONNRESET"
        ? undefined
        : reject(e),
    );
    req.end(body);
  });

/** CPU (user + system) this process spends on `n` rounds of `f`, in ms per round. */
const cpuPerRound = async (n: number, f: () => Promise<unknown>) => {
  await f(); // warm-up
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i++) await f();
  const d = process.cpuUsage(t0);
  return (d.user + d.system) / 1000 / n;
};

describe("access before parsing", () => {
  let store: Store;
  let hub: Hub;
  let url: string;
  let runId: string;
  let dir: string;

  beforeAll(async () => {
    store = await openStore("memory:");
    dir = mkdtempSync(join(tmpdir(), "fleetlink-auth-first-"));
    hub = createHub({
      store,
      token: ADMIN,
      checkpointStore: `file://${join(dir, "ckpt")}`,
      blobStore: `file://${join(dir, "blobs")}`,
    });
    url = await hub.listen();
    runId = (await store.createRun()).id;
  });
  afterAll(async () => {
    await hub.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a 7 MB unauthenticated body costs about what a tiny one does; an authenticated one is parsed", async () => {
    const tiny = Buffer.from('{"items":[]}');
    // Valid JSON that takes real parsing: 7 MB of items.
    const item = JSON.stringify({ dst: newId(), method: "m", payload: "x".repeat(200) });
    const big = Buffer.from(`{"items":[${Array.from({ length: 28_000 }, () => item).join(",")}]}`);
    expect(big.length).toBeGreaterThan(7 * 1024 * 1024);
    const path = `/v1/runs/${runId}/instructions`;
    for (const [body, auth] of [
      [tiny, undefined],
      [big, undefined],
      [big, "Bearer wrong"],
    ] as const) {
      const r = await send(url, path, body, auth);
      expect(r).toEqual({ status: 401, code: "FLEETLINK_E_UNAUTHORIZED" });
    }
    const authed = await send(url, path, big, `Bearer ${ADMIN}`);
    expect(authed.status, authed.code).toBeGreaterThanOrEqual(400);
    expect(authed.status).not.toBe(401);
    const rounds = 8;
    const tinyMs = await cpuPerRound(rounds, () => send(url, path, tiny));
    const bigMs = await cpuPerRound(rounds, () => send(url, path, big));
    // The same big body with the admin token is read and parsed (then refused: its nodes do not exist).
    const parsedMs = await cpuPerRound(rounds, () => send(url, path, big, `Bearer ${ADMIN}`));
    console.log(
      `CPU per request: 401 tiny ${tinyMs.toFixed(2)} ms, 401 7 MB ${bigMs.toFixed(2)} ms, authenticated 7 MB ${parsedMs.toFixed(2)} ms`,
    );
    // The client's own sending is in these numbers too (same process); the bound is against parsing.
    expect(bigMs).toBeLessThan(parsedMs / 2);
    expect(bigMs).toBeLessThan(tinyMs + 15);
  }, 60_000);

  test("path parameters and query strings are not validated before the 401", async () => {
    for (const [method, path] of [
      ["GET", "/v1/runs/not-a-uuid"],
      ["DELETE", "/v1/nodes/x"],
      ["GET", "/v1/runs?limit=not-digits&bogus=1"],
      ["POST", "/v1/runs/x/instructions"],
      ["PUT", "/v1/runs/x/hosts"],
      ["GET", "/v1/runs/x/blobs/not-hex"],
      ["PUT", "/v1/runs/x/blobs/uploads/y"],
      ["POST", "/v1/runs/x/checkpoints/pull"],
      ["POST", "/v1/nodes/enroll"],
      ["POST", "/v1/node/reply"],
      ["DELETE", "/v1/tokens/x"],
    ] as const) {
      const r = await hub.app.inject({
        method,
        url: path,
        headers: { "content-type": "application/json" },
        payload: "{not json",
      });
      expect({ path, status: r.statusCode, code: r.json().error.code }).toEqual({
        path,
        status: 401,
        code: "FLEETLINK_E_UNAUTHORIZED",
      });
    }
  });

  test("POST /v1/runs: no body or an object {tenant?}; null, arrays, strings, unknown fields and 8 MiB are refused naming the body, creating nothing", async () => {
    const auth = { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" };
    const before = (await store.listRuns({ limit: 1000 })).length;
    for (const [payload, status, field] of [
      ["null", 400, "body"],
      ["[]", 400, "body"],
      ['"run"', 400, "body"],
      ["42", 400, "body"],
      ['{"tenant":"Bad Name"}', 400, "body.tenant"],
      ['{"name":"x"}', 400, "body.name"],
      [`{"tenant":"${"a".repeat(8 * 1024 * 1024)}"}`, 413, "body"],
    ] as const) {
      const r = await hub.app.inject({ method: "POST", url: "/v1/runs", headers: auth, payload });
      expect({ payload: payload.slice(0, 30), status: r.statusCode, field: r.json().error.field }).toEqual({
        payload: payload.slice(0, 30),
        status,
        field,
      });
    }
    expect((await store.listRuns({ limit: 1000 })).length).toBe(before);
    const none = await hub.app.inject({
      method: "POST",
      url: "/v1/runs",
      headers: { authorization: auth.authorization },
    });
    expect(none.statusCode).toBe(201);
    expect(none.json().run.tenant).toBe("default");
    const empty = await hub.app.inject({ method: "POST", url: "/v1/runs", headers: auth, payload: "{}" });
    expect(empty.statusCode).toBe(201);
    const named = await hub.app.inject({
      method: "POST",
      url: "/v1/runs",
      headers: auth,
      payload: '{"tenant":"t1"}',
    });
    expect(named.json().run.tenant).toBe("t1");
    expect((await store.listRuns({ limit: 1000 })).length).toBe(before + 3);
  });
});
