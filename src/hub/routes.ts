import type { FastifyInstance, FastifyRequest } from "fastify";
import { FleetlinkError } from "../protocol/errors.ts";
import type { NodeRecord } from "../protocol/types.ts";
import { encodePayload, toWireResult } from "../protocol/wire.ts";
import type { Store } from "../store/store.ts";
import { bearer, hashCredential, newCredential, sameSecret } from "./auth.ts";

const uuid = { type: "string", format: "uuid" } as const;
const idParams = (...names: string[]) => ({
  type: "object",
  required: names,
  properties: Object.fromEntries(names.map((n) => [n, uuid])),
});
const idList = { type: "array", items: uuid, maxItems: 100_000 } as const;

export interface RouteContext {
  store: Store;
  token: string;
  enrollToken: string;
  heartbeatIntervalMs: number;
  /** Called after a change this replica made, so its own streams react at once (targeted when possible). */
  changed: (dsts?: readonly string[]) => void;
  stats: () => Record<string, number>;
}

const publicNode = ({ credentialHash: _, ...n }: NodeRecord) => n;

/** The versioned HTTP API for coordinators and admins (token) and node enrollment (enrollment token). */
export const requireToken = (expected: string) => async (req: FastifyRequest) => {
  if (!sameSecret(bearer(req.headers.authorization), expected))
    throw new FleetlinkError("UNAUTHORIZED", "wrong token");
};

export const registerRoutes = (app: FastifyInstance, ctx: RouteContext): void => {
  const { store } = ctx;
  const admin = { preHandler: requireToken(ctx.token) };

  app.get("/healthz", async () => ({ ok: true }));
  app.get("/readyz", async (_req, reply) => {
    try {
      await store.stats();
      return { ok: true };
    } catch (e) {
      return reply.code(503).send({ ok: false, error: String((e as Error).message) });
    }
  });

  app.post(
    "/v1/nodes/enroll",
    {
      preHandler: requireToken(ctx.enrollToken),
      schema: {
        body: {
          type: "object",
          required: ["name"],
          additionalProperties: false,
          properties: {
            name: { type: "string", minLength: 1, maxLength: 200 },
            heartbeatIntervalMs: { type: "integer", minimum: 100, maximum: 3_600_000 },
          },
        },
      },
    },
    async (req, reply) => {
      const b = req.body as { name: string; heartbeatIntervalMs?: number };
      const credential = newCredential();
      const node = await store.registerNode({
        name: b.name,
        heartbeatIntervalMs: b.heartbeatIntervalMs ?? ctx.heartbeatIntervalMs,
        credentialHash: hashCredential(credential),
      });
      return reply.code(201).send({ node: publicNode(node), credential });
    },
  );

  app.get("/v1/nodes", admin, async () => ({ nodes: (await store.listNodes()).map(publicNode) }));

  app.delete("/v1/nodes/:node", { ...admin, schema: { params: idParams("node") } }, async (req) => {
    const { node } = req.params as { node: string };
    const n = await store.unregisterNode(node);
    ctx.changed();
    return { node: publicNode(n) };
  });

  app.post("/v1/runs", admin, async (_req, reply) => reply.code(201).send({ run: await store.createRun() }));

  app.get("/v1/runs/:run", { ...admin, schema: { params: idParams("run") } }, async (req) => ({
    run: await store.getRun((req.params as { run: string }).run),
  }));

  app.post(
    "/v1/runs/:run/status",
    {
      ...admin,
      schema: {
        params: idParams("run"),
        body: {
          type: "object",
          required: ["from", "to"],
          additionalProperties: false,
          properties: {
            from: { enum: ["pending", "running", "finished"] },
            to: { enum: ["pending", "running", "finished"] },
            reason: { type: "string", maxLength: 1000 },
          },
        },
      },
    },
    async (req) => {
      const b = req.body as { from: "pending"; to: "running"; reason?: string };
      return { run: await store.transitionRun((req.params as { run: string }).run, b.from, b.to, b.reason) };
    },
  );

  app.post(
    "/v1/runs/:run/instructions",
    {
      ...admin,
      schema: {
        params: idParams("run"),
        body: {
          type: "object",
          required: ["items"],
          additionalProperties: false,
          properties: {
            items: {
              type: "array",
              minItems: 1,
              maxItems: 100_000,
              items: {
                type: "object",
                required: ["dst", "method", "ttlMs"],
                additionalProperties: false,
                properties: {
                  id: uuid,
                  dst: uuid,
                  method: { type: "string", minLength: 1, maxLength: 200 },
                  payload: {},
                  ttlMs: { type: "integer", minimum: 1 },
                  groupId: { type: "string", minLength: 1, maxLength: 200 },
                  maxAttempts: { type: "integer", minimum: 1, maximum: 1000 },
                  holdWhileOffline: { type: "boolean" },
                },
              },
            },
          },
        },
      },
    },
    async (req, reply) => {
      const { items } = req.body as { items: (Record<string, unknown> & { payload?: unknown })[] };
      const pushed = await store.pushInstructions(
        (req.params as { run: string }).run,
        items.map((it) => ({ ...it, payload: encodePayload(it.payload) }) as never),
      );
      ctx.changed(pushed.map((i) => i.dst));
      return reply.code(201).send({
        instructions: pushed.map((i) => ({ id: i.id, dst: i.dst, expiresAt: i.expiresAt })),
      });
    },
  );

  const idsBody = (name: string) => ({
    type: "object",
    required: [name],
    additionalProperties: false,
    properties: { [name]: idList },
  });

  app.post(
    "/v1/runs/:run/instructions/withdraw",
    { ...admin, schema: { params: idParams("run"), body: idsBody("ids") } },
    async (req) => ({
      withdrawn: await store.withdrawInstructions(
        (req.params as { run: string }).run,
        (req.body as { ids: string[] }).ids,
      ),
    }),
  );

  app.post(
    "/v1/runs/:run/instructions/query",
    { ...admin, schema: { params: idParams("run"), body: idsBody("ids") } },
    async (req) => {
      const ins = await store.getInstructions(
        (req.params as { run: string }).run,
        (req.body as { ids: string[] }).ids,
      );
      return {
        instructions: ins.map((i) => ({
          id: i.id,
          dst: i.dst,
          state: i.state,
          attempts: i.attempts,
          expiresAt: i.expiresAt,
        })),
      };
    },
  );

  app.post(
    "/v1/runs/:run/replies/query",
    { ...admin, schema: { params: idParams("run"), body: idsBody("instructionIds") } },
    async (req) => {
      const { instructionIds } = req.body as { instructionIds: string[] };
      const replies = await store.getReplies((req.params as { run: string }).run, instructionIds);
      return { replies: replies.map(toWireResult) };
    },
  );

  app.post(
    "/v1/runs/:run/replies/claim",
    {
      ...admin,
      schema: {
        params: idParams("run"),
        body: {
          type: "object",
          additionalProperties: false,
          properties: { limit: { type: "integer", minimum: 1, maximum: 10_000 }, instructionIds: idList },
        },
      },
    },
    async (req) => {
      const b = (req.body ?? {}) as { limit?: number; instructionIds?: string[] };
      const replies = await store.claimReplies({ runId: (req.params as { run: string }).run, ...b });
      return { replies: replies.map(toWireResult) };
    },
  );

  app.get("/v1/stats", admin, async () => ({ store: await store.stats(), hub: ctx.stats() }));
};
