// Checkpoint routes validate every body and parameter before anything starts, answer RUN_NOT_FOUND for
// unknown runs, and take authentication in onRequest or preHandler.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeEach, describe, expect, test } from "vitest";
import { openObjectStore } from "../../src/checkpoint/open.ts";
import { Checkpoints } from "../../src/checkpoint/orchestrator.ts";
import { registerCheckpointRoutes } from "../../src/hub/checkpoints/routes.ts";
import { FleetlinkError } from "../../src/protocol/errors.ts";
import { newId } from "../../src/protocol/ids.ts";
import { openStore } from "../../src/store/open.ts";
import { silentLogger } from "../../src/stream/channel.ts";
import { type CheckpointFleet, startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { TOKEN } from "../helpers/fleet.ts";

const auth = { authorization: `Bearer ${TOKEN}` };
const json = { ...auth, "content-type": "application/json" };
const dir = mkdtempSync(join(tmpdir(), "fleetlink-ckpt-routes-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("checkpoint routes", () => {
  let f: CheckpointFleet;
  let hub: CheckpointFleet["hub"];
  let fleet: CheckpointFleet["fleet"];
  beforeEach(async () => {
    f = await startCheckpointFleet();
    ({ hub, fleet } = f);
  });
  afterEach(() => f.close());

  const node = (name: string) => f.node(name);
  const inject = (method: "GET" | "POST" | "PUT", path: string, payload?: unknown, headers = auth) =>
    hub.app.inject({
      method,
      url: path,
      headers: payload === undefined ? headers : { ...headers, "content-type": "application/json" },
      ...(payload === undefined
        ? {}
        : { payload: typeof payload === "string" ? payload : JSON.stringify(payload) }),
    });
  const errorOf = (res: { json: () => unknown }) =>
    (res.json() as { error: { code: string; field?: string } }).error;

  test("push - a body other than none or {} is refused before anything starts; an 8 MiB one is 413", async () => {
    const h = await node("p0");
    const run = await fleet.createRun();
    await fleet.checkpoints.assign(run, [h.agent.nodeId!]);
    const path = `/v1/runs/${run.id}/checkpoints/push`;
    const extra = await inject("POST", path, { id: newId() });
    expect(extra.statusCode).toBe(400);
    expect(errorOf(extra)).toMatchObject({ code: "FLEETLINK_E_INVALID_ARGUMENT", field: "body.id" });
    for (const bad of [[], '"x"', 5, "{}{"])
      expect(
        (await inject("POST", path, typeof bad === "string" ? bad : JSON.stringify(bad))).statusCode,
      ).toBe(400);
    const big = await inject("POST", path, JSON.stringify({ pad: "x".repeat(8 * 1024 * 1024) }));
    expect(big.statusCode).toBe(413);
    expect(errorOf(big).code).toBe("FLEETLINK_E_PAYLOAD_TOO_LARGE");
    expect((await fleet.checkpoints.status(run)).push.status).toBe("not_requested");
    // No body (what the client sends) and {} both start one.
    const none = await inject("POST", path);
    expect(none.statusCode).toBe(202);
    for (let i = 0; i < 100 && (await fleet.checkpoints.status(run)).push.status === "in_progress"; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect((await inject("POST", path, {})).statusCode).toBe(202);
  });

  test("errors - say what to do next: assign first, list the checkpoints, an id must be a UUID or latest", async () => {
    const h = await node("e0");
    const run = await fleet.createRun();
    const message = (res: { json: () => unknown }) =>
      (res.json() as { error: { message: string } }).error.message;
    const noRoles = await inject("POST", `/v1/runs/${run.id}/checkpoints/push`);
    expect(noRoles.statusCode).toBe(400);
    expect(message(noRoles)).toContain(`fleetlink checkpoint assign --run ${run.id} --hosts `);
    await fleet.checkpoints.assign(run, [h.agent.nodeId!]);
    const pull = `/v1/runs/${run.id}/checkpoints/pull`;
    const none = await inject("POST", pull, { id: "latest" });
    expect(none.statusCode).toBe(404);
    expect(message(none)).toContain(`push one first (fleetlink checkpoint push --run ${run.id})`);
    const missing = await inject("POST", pull, { id: newId() });
    expect(missing.statusCode).toBe(404);
    expect(errorOf(missing)).toMatchObject({ code: "FLEETLINK_E_CHECKPOINT_NOT_FOUND", field: "id" });
    expect(message(missing)).toContain(`fleetlink checkpoint list --run ${run.id} lists the ones there are`);
    const bad = await inject("POST", pull, { id: "nosuch" });
    expect(bad.statusCode).toBe(400);
    expect(errorOf(bad)).toMatchObject({ code: "FLEETLINK_E_INVALID_ARGUMENT", field: "body.id" });
    expect(message(bad)).toBe('body.id: must be a UUID or "latest"');
  });

  test("activate - the host path parameter is a digit string: the route and fleet.checkpoints.activate work", async () => {
    const h0 = await node("a0");
    const h1 = await node("a1");
    const sb1 = await node("sb1");
    const sb0 = await node("sb0");
    const run = await fleet.createRun();
    await fleet.checkpoints.assign(
      run,
      [h0.agent.nodeId!, h1.agent.nodeId!],
      [
        { hostIdx: 1, nodeId: sb1.agent.nodeId! },
        { hostIdx: 0, nodeId: sb0.agent.nodeId! },
      ],
    );
    expect((await fleet.checkpoints.push(run)).status).toBe("ok");
    const roles = await fleet.checkpoints.activate(run, 1);
    expect(roles.hosts[1]).toEqual({ hostIdx: 1, nodeId: sb1.agent.nodeId, standby: [] });
    expect(Buffer.compare(sb1.box.data, h1.box.data)).toBe(0);
    const res = await inject("POST", `/v1/runs/${run.id}/hosts/0/activate`);
    expect(res.statusCode).toBe(200);
    expect((res.json() as { roles: { hosts: { nodeId: string }[] } }).roles.hosts[0]!.nodeId).toBe(
      sb0.agent.nodeId,
    );
    expect(Buffer.compare(sb0.box.data, h0.box.data)).toBe(0);
    // No standby left: a typed refusal from the orchestrator, not a schema error.
    await rejectsWith(fleet.checkpoints.activate(run, 1), "INVALID_ARGUMENT", "hostIdx");
    for (const host of ["x", "-1", "1.5", "1234567", "%20"]) {
      const bad = await inject("POST", `/v1/runs/${run.id}/hosts/${host}/activate`);
      expect(bad.statusCode).toBe(400);
      expect(errorOf(bad).field).toBe("params.host");
    }
    expect((await inject("POST", `/v1/runs/${run.id}/hosts/0/activate`, { now: true })).statusCode).toBe(400);
    await rejectsWith(fleet.checkpoints.activate(run, -1), "INVALID_ARGUMENT", "hostIdx");
  });

  test("unknown run - every checkpoint route answers 404 RUN_NOT_FOUND", async () => {
    const r = newId();
    const h = await node("u0");
    const calls: [method: "GET" | "POST" | "PUT", path: string, body?: unknown][] = [
      ["GET", `/v1/runs/${r}/checkpoints/push_status`],
      ["GET", `/v1/runs/${r}/checkpoints/pull_status`],
      ["GET", `/v1/runs/${r}/checkpoints`],
      ["GET", `/v1/runs/${r}/hosts`],
      ["PUT", `/v1/runs/${r}/hosts`, { hosts: [h.agent.nodeId] }],
      ["POST", `/v1/runs/${r}/hosts/0/activate`],
      ["POST", `/v1/runs/${r}/checkpoints/push`],
      ["POST", `/v1/runs/${r}/checkpoints/pull`, { id: "latest" }],
    ];
    for (const [method, path, body] of calls) {
      const res = await inject(method, path, body);
      expect({ path, status: res.statusCode, code: errorOf(res)?.code }).toEqual({
        path,
        status: 404,
        code: "FLEETLINK_E_RUN_NOT_FOUND",
      });
    }
    await rejectsWith(fleet.checkpoints.roles(r), "RUN_NOT_FOUND");
    await rejectsWith(fleet.checkpoints.activate(r, 0), "RUN_NOT_FOUND");
  });

  test("hosts - a standby hostIdx is bounded by the schema (at most 9999)", async () => {
    const h = await node("b0");
    const run = await fleet.createRun();
    const res = await inject("PUT", `/v1/runs/${run.id}/hosts`, {
      hosts: [h.agent.nodeId],
      standby: [{ hostIdx: 10_000, nodeId: h.agent.nodeId }],
    });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).field).toBe("body.standby.0.hostIdx");
    const ok = await inject("PUT", `/v1/runs/${run.id}/hosts`, { hosts: [h.agent.nodeId] }, json);
    expect(ok.statusCode).toBe(200);
  });
});

describe("registerCheckpointRoutes - admin options", () => {
  const deny = async () => {
    throw new FleetlinkError("UNAUTHORIZED", "no");
  };
  const app = async (admin: Parameters<typeof registerCheckpointRoutes>[2]) => {
    const store = await openStore("memory:");
    const objects = openObjectStore(`file://${join(dir, "admin")}`);
    const cp = new Checkpoints({ store, objects, changed: () => {}, log: silentLogger });
    const a: FastifyInstance = Fastify();
    a.setErrorHandler((e: FleetlinkError | FastifyError, _req, reply) =>
      reply.code(e instanceof FleetlinkError ? e.status : (e.statusCode ?? 500)).send({ code: e.code }),
    );
    registerCheckpointRoutes(a, cp, admin);
    const close = async () => {
      await a.close();
      await store.close();
    };
    return { a, close };
  };
  const post = (a: FastifyInstance, payload: string) =>
    a.inject({
      method: "POST",
      url: `/v1/runs/${newId()}/checkpoints/pull`,
      headers: { "content-type": "application/json" },
      payload,
    });

  test("onRequest runs before the body is read: a refused caller never reaches parsing or validation", async () => {
    const { a, close } = await app({ onRequest: deny });
    for (const body of ["{not json", JSON.stringify({ id: "latest" })]) {
      const res = await post(a, body);
      expect(res.statusCode).toBe(401);
      expect(res.json()).toEqual({ code: "FLEETLINK_E_UNAUTHORIZED" });
    }
    await close();
  });

  test("preHandler still works (after validation)", async () => {
    const { a, close } = await app({ preHandler: deny });
    expect((await post(a, "{not json")).statusCode).toBe(400);
    expect((await post(a, JSON.stringify({ id: "latest" }))).statusCode).toBe(401);
    await close();
  });
});
