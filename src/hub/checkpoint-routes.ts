import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Checkpoints, OpKind } from "../checkpoint/orchestrator.ts";
import { isFleetlinkError } from "../protocol/errors.ts";

const uuid = { type: "string", format: "uuid" } as const;
const runParams = { type: "object", required: ["run"], properties: { run: uuid } } as const;

/** Checkpoint routes (coordinator token): host roles, push/pull with status, list, standby activation. */
export const registerCheckpointRoutes = (
  app: FastifyInstance,
  cp: Checkpoints,
  admin: { preHandler: (req: FastifyRequest) => Promise<void> },
): void => {
  const run = (req: { params: unknown }) => (req.params as { run: string }).run;
  /** 409 carries the status of the operation in progress, so the caller can show or wait for it. */
  const conflict = (e: unknown, reply: FastifyReply) => {
    if (isFleetlinkError(e, "CONFLICT"))
      return reply
        .code(409)
        .send({ error: e.toJSON(), status: (e as unknown as { current?: unknown }).current ?? null });
    throw e;
  };

  app.put(
    "/v1/runs/:run/hosts",
    {
      ...admin,
      schema: {
        params: runParams,
        body: {
          type: "object",
          required: ["hosts"],
          additionalProperties: false,
          properties: {
            hosts: { type: "array", minItems: 1, maxItems: 10_000, items: uuid },
            standby: {
              type: "array",
              items: {
                type: "object",
                required: ["hostIdx", "nodeId"],
                additionalProperties: false,
                properties: { hostIdx: { type: "integer", minimum: 0 }, nodeId: uuid },
              },
            },
          },
        },
      },
    },
    async (req) => {
      const b = req.body as { hosts: string[]; standby?: { hostIdx: number; nodeId: string }[] };
      return { roles: await cp.assign(run(req), b.hosts, b.standby) };
    },
  );

  app.get("/v1/runs/:run/hosts", { ...admin, schema: { params: runParams } }, async (req) => ({
    roles: await cp.roles(run(req)),
  }));

  app.post(
    "/v1/runs/:run/hosts/:host/activate",
    {
      ...admin,
      schema: {
        params: {
          type: "object",
          required: ["run", "host"],
          properties: { run: uuid, host: { type: "integer", minimum: 0 } },
        },
      },
    },
    async (req) => ({ roles: await cp.activate(run(req), Number((req.params as { host: number }).host)) }),
  );

  app.post(
    "/v1/runs/:run/checkpoints/push",
    { ...admin, schema: { params: runParams } },
    async (req, reply) => {
      try {
        const { id } = await cp.startPush(run(req));
        return reply.code(202).send({ id });
      } catch (e) {
        return conflict(e, reply);
      }
    },
  );

  app.post(
    "/v1/runs/:run/checkpoints/pull",
    {
      ...admin,
      schema: {
        params: runParams,
        body: {
          type: "object",
          required: ["id"],
          additionalProperties: false,
          properties: { id: { anyOf: [uuid, { const: "latest" }] } },
        },
      },
    },
    async (req, reply) => {
      try {
        const { id } = await cp.startPull(run(req), (req.body as { id: string }).id);
        return reply.code(202).send({ id });
      } catch (e) {
        return conflict(e, reply);
      }
    },
  );

  for (const kind of ["push", "pull"] as OpKind[])
    app.get(
      `/v1/runs/:run/checkpoints/${kind}_status`,
      { ...admin, schema: { params: runParams } },
      async (req) => cp.status(run(req), kind),
    );

  app.get("/v1/runs/:run/checkpoints", { ...admin, schema: { params: runParams } }, async (req) => ({
    checkpoints: (await cp.list(run(req))).map((m) => ({
      id: m.id,
      createdAt: m.createdAt,
      nHosts: m.nHosts,
      bytes: m.hosts.reduce((n, h) => n + h.size, 0),
    })),
  }));
};
