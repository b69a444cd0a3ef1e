// The dashboard's reads behind the call page, the node page, recent failures and the rate charts, through the hub's routes
// (fastify inject) on SQLite and PostgreSQL; and how payloads are shown.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { payloadView } from "../../src/hub/dashboard/payload-view.ts";
import { newId } from "../../src/protocol/ids.ts";
import { storeReply } from "../../src/store/store.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";
import { dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const SHA = "ab".repeat(32);

describe("payloadView", () => {
  it("payload - whole JSON is decoded and re-indented; blob references are named by hash and size", () => {
    const p = bytes(JSON.stringify({ n: 1, file: { $blob: `sha256:${SHA}`, size: 12345 } }));
    const v = payloadView(p, p.byteLength, 4096);
    expect(v).toMatchObject({ kind: "json", truncated: false, bytes: p.byteLength });
    expect(v.text).toContain('\n  "n": 1');
    expect(v.blobs).toEqual([{ sha256: SHA, size: 12345 }]);
  });

  it("payload - a cut payload is shown as text with its full size; references in the part read are still found", () => {
    const full = JSON.stringify({ file: { $blob: `sha256:${SHA}`, size: 7 }, pad: "é".repeat(5000) });
    const all = bytes(full);
    // Cut inside a two-byte character: the partial character is dropped, not shown as garbage.
    const preview = all.subarray(0, 4095);
    const v = payloadView(preview, all.byteLength, 4096);
    expect(v.kind).toBe("text");
    expect(v.truncated).toBe(true);
    expect(v.bytes).toBe(all.byteLength);
    expect(v.text!.endsWith("é")).toBe(true);
    expect(v.blobs).toEqual([{ sha256: SHA, size: 7 }]);
  });

  it("payload - bytes that are not UTF-8 text are binary; an empty payload is empty", () => {
    expect(payloadView(new Uint8Array([0xff, 0xfe, 0x00, 0x01]), 4, 4096)).toMatchObject({
      kind: "binary",
      text: null,
      bytes: 4,
    });
    expect(payloadView(new Uint8Array([0x41, 0x00, 0x42]), 3, 4096).kind).toBe("binary");
    expect(payloadView(new Uint8Array(0), 0, 4096).kind).toBe("empty");
    expect(payloadView(bytes("not json"), 8, 4096)).toMatchObject({ kind: "text", text: "not json" });
  });
});

const backends: { name: string; open: () => Promise<{ url?: string; cleanup: () => Promise<void> }> }[] = [
  { name: "sqlite", open: async () => ({ cleanup: async () => {} }) },
  ...(PG_URL
    ? [
        {
          name: "postgres",
          open: async () => {
            const { url, schema } = pgSchemaUrl("dash");
            return { url, cleanup: () => dropSchema(schema) };
          },
        },
      ]
    : []),
];

for (const b of backends) {
  describe(`dashboard reads on ${b.name}`, () => {
    let f: TestFleet;
    let cleanup: () => Promise<void>;
    const auth = { authorization: `Bearer ${TOKEN}` };
    const get = async (url: string, headers: Record<string, string> = auth) => {
      const r = await f.hub.app.inject({ method: "GET", url, headers });
      return { status: r.statusCode, body: r.json() };
    };

    beforeAll(async () => {
      const made = await b.open();
      cleanup = made.cleanup;
      f = await startFleet({ ...(made.url ? { storeUrl: made.url } : {}), dashboardRateIntervalMs: 100 });
    });
    afterAll(async () => {
      await f?.close();
      await cleanup?.();
    });

    it("GET /v1/runs/:run/calls/:id - each node's payload, result or error, attempts and latency", async () => {
      const { store } = f;
      const a = await store.heartbeat(
        (await store.registerNode({ name: "a", heartbeatIntervalMs: 60_000 })).id,
      );
      const c = await store.heartbeat(
        (await store.registerNode({ name: "c", heartbeatIntervalMs: 60_000 })).id,
      );
      const run = await store.createRun();
      const group = newId();
      const big = JSON.stringify({ data: "z".repeat(10_000) });
      const [ia, ic] = await store.pushInstructions(run.id, [
        { dst: a.id, method: "work", payload: bytes(big), ttlMs: 60_000, groupId: group },
        { dst: c.id, method: "work", payload: bytes('{"x":1}'), ttlMs: 60_000, groupId: group },
      ]);
      await store.claimInstructions({ nodeIds: [a.id, c.id], limit: 5 });
      await storeReply(store, {
        runId: run.id,
        nodeId: a.id,
        replyTo: ia!.id,
        payload: bytes('{"ok":true}'),
      });
      await storeReply(store, {
        runId: run.id,
        nodeId: c.id,
        replyTo: ic!.id,
        error: { code: "FLEETLINK_E_HANDLER_FAILED", message: "out of memory on c" },
      });

      const { status, body } = await get(`/v1/runs/${run.id}/calls/${group}`);
      expect(status).toBe(200);
      const call = body.call;
      expect(call).toMatchObject({ method: "work", ok: 1, error: 1, open: 0, previewBytes: 4096 });
      expect(call.firstReplyMs).toBeGreaterThanOrEqual(0);
      expect(call.lastReplyMs).toBeGreaterThanOrEqual(call.firstReplyMs);
      const [na, nc] = call.nodes;
      expect(na).toMatchObject({
        name: "a",
        nodeId: a.id,
        state: "ok",
        attempts: 1,
        maxAttempts: 3,
        error: null,
      });
      expect(na.payload).toMatchObject({ kind: "text", truncated: true, bytes: big.length });
      expect(na.payload.text.length).toBe(4096);
      expect(na.result).toMatchObject({ kind: "json", text: '{\n  "ok": true\n}' });
      expect(na.latencyMs).toBe(na.repliedAt - na.pushedAt);
      // Pushed, then delivered (the claim above), then replied.
      expect(na.deliveredAt).toBeGreaterThanOrEqual(na.pushedAt);
      expect(na.deliveredAt).toBeLessThanOrEqual(na.repliedAt);
      expect(nc).toMatchObject({
        name: "c",
        state: "error",
        result: null,
        error: { code: "FLEETLINK_E_HANDLER_FAILED", message: "out of memory on c" },
      });
      expect(nc.payload).toMatchObject({ kind: "json", text: '{\n  "x": 1\n}' });

      expect((await get(`/v1/runs/${run.id}/calls/${newId()}`)).body.error.code).toBe(
        "FLEETLINK_E_INSTRUCTION_NOT_FOUND",
      );
      expect((await get(`/v1/runs/${newId()}/calls/${group}`)).status).toBe(404);
      expect((await get(`/v1/runs/${run.id}/calls/nope`)).status).toBe(400);
    });

    it("GET /v1/nodes/:node/instructions - newest first, filtered on the hub by method, run and outcome", async () => {
      const { store } = f;
      const n = await store.heartbeat(
        (await store.registerNode({ name: "n", heartbeatIntervalMs: 60_000 })).id,
      );
      const r1 = await store.createRun();
      const r2 = await store.createRun();
      const [x] = await store.pushInstructions(r1.id, [{ dst: n.id, method: "x", ttlMs: 60_000 }]);
      const [y] = await store.pushInstructions(r2.id, [{ dst: n.id, method: "y", ttlMs: 60_000 }]);
      const [z] = await store.pushInstructions(r2.id, [{ dst: n.id, method: "x", ttlMs: 60_000 }]);
      await store.claimInstructions({ nodeIds: [n.id], limit: 5 });
      await storeReply(store, { runId: r1.id, nodeId: n.id, replyTo: x!.id, payload: bytes("1") });
      await storeReply(store, {
        runId: r2.id,
        nodeId: n.id,
        replyTo: y!.id,
        error: { code: "E_Y", message: "y failed" },
      });
      const ids = async (q: string) => {
        const r = await get(`/v1/nodes/${n.id}/instructions${q}`);
        expect(r.status).toBe(200);
        return (r.body.instructions as { id: string }[]).map((i) => i.id);
      };
      expect(await ids("")).toEqual([z!.id, y!.id, x!.id]);
      expect(await ids("?method=x")).toEqual([z!.id, x!.id]);
      expect(await ids(`?run=${r2.id}`)).toEqual([z!.id, y!.id]);
      expect(await ids("?outcome=error")).toEqual([y!.id]);
      expect(await ids("?outcome=pending&method=x")).toEqual([z!.id]);
      expect(await ids("?limit=1")).toEqual([z!.id]);
      const [, failed, done] = (await get(`/v1/nodes/${n.id}/instructions`)).body.instructions;
      expect(failed).toMatchObject({
        method: "y",
        state: "error",
        error: { code: "E_Y", message: "y failed" },
      });
      expect(done).toMatchObject({ callId: x!.id, state: "ok", resultBytes: 1, runId: r1.id });
      expect((await get(`/v1/nodes/${n.id}/instructions?outcome=maybe`)).status).toBe(400);
      expect((await get(`/v1/nodes/${n.id}/instructions?limit=5000`)).status).toBe(400);
      expect((await get(`/v1/nodes/${newId()}/instructions`)).body.error.code).toBe(
        "FLEETLINK_E_NODE_NOT_FOUND",
      );
    });

    it("GET /v1/rates - store-wide samples for an unscoped token, none for a tenant's", async () => {
      const { store } = f;
      // Rates are per second of each interval: rate × interval length gives back the counts.
      const counted = async () => {
        const { body } = await get("/v1/rates");
        expect(body.intervalMs).toBe(100);
        const s = body.samples as { pushes: number; errors: number; at: number }[];
        const sum = { pushes: 0, errors: 0 };
        for (let i = 1; i < s.length; i++) {
          const dt = (s[i]!.at - s[i - 1]!.at) / 1000;
          sum.pushes += s[i]!.pushes * dt;
          sum.errors += s[i]!.errors * dt;
        }
        return { pushes: Math.round(sum.pushes), errors: Math.round(sum.errors) };
      };
      // Sampled before the work below: the first sample has no interval of its own.
      await expect
        .poll(async () => ((await get("/v1/rates")).body.samples as unknown[]).length)
        .toBeGreaterThan(1);
      const before = await counted();
      const n = await store.heartbeat(
        (await store.registerNode({ name: "r", heartbeatIntervalMs: 60_000 })).id,
      );
      const run = await store.createRun();
      const ins = await store.pushInstructions(
        run.id,
        Array.from({ length: 10 }, () => ({ dst: n.id, method: "m", ttlMs: 60_000 })),
      );
      await store.claimInstructions({ nodeIds: [n.id], limit: 10 });
      for (const i of ins.slice(0, 7))
        await storeReply(store, {
          runId: run.id,
          nodeId: n.id,
          replyTo: i.id,
          error: { code: "E", message: "no" },
        });
      await storeReply(store, { runId: run.id, nodeId: n.id, replyTo: ins[7]!.id });
      await expect
        .poll(counted, { timeout: 3000 })
        .toEqual({ pushes: before.pushes + 10, errors: before.errors + 7 });
      const made = await f.hub.app.inject({
        method: "POST",
        url: "/v1/tokens",
        headers: auth,
        payload: { role: "reader", tenant: "team-x" },
      });
      const secret = made.json().secret as string;
      const scoped = await get("/v1/rates", { authorization: `Bearer ${secret}` });
      expect(scoped.status).toBe(200);
      expect(scoped.body.samples).toBeNull();
    });

    it("GET /v1/failures - the newest error replies, newest first; a tenant's token sees its own", async () => {
      const { store } = f;
      const n = await store.heartbeat(
        (await store.registerNode({ name: "f", heartbeatIntervalMs: 60_000 })).id,
      );
      const run = await store.createRun();
      const group = newId();
      const [a, b] = await store.pushInstructions(run.id, [
        { dst: n.id, method: "square", ttlMs: 60_000, groupId: group },
        { dst: n.id, method: "resize", ttlMs: 60_000 },
      ]);
      await store.claimInstructions({ nodeIds: [n.id], limit: 5 });
      await storeReply(store, {
        runId: run.id,
        nodeId: n.id,
        replyTo: a!.id,
        error: { code: "FLEETLINK_E_HANDLER_FAILED", message: "square failed" },
      });
      await storeReply(store, { runId: run.id, nodeId: n.id, replyTo: b!.id, payload: bytes("1") });
      const { status, body } = await get("/v1/failures?limit=1");
      expect(status).toBe(200);
      expect(body.failures).toEqual([
        expect.objectContaining({
          runId: run.id,
          nodeId: n.id,
          callId: group,
          method: "square",
          code: "FLEETLINK_E_HANDLER_FAILED",
          message: "square failed",
        }),
      ]);
      expect((await get("/v1/failures?limit=500")).status).toBe(400);
      const made = await f.hub.app.inject({
        method: "POST",
        url: "/v1/tokens",
        headers: auth,
        payload: { role: "reader", tenant: "team-y" },
      });
      const scoped = await get("/v1/failures", { authorization: `Bearer ${made.json().secret as string}` });
      expect(scoped).toEqual({ status: 200, body: { failures: [] } });
    });
  });
}
