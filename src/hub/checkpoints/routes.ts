import type { FastifyInstance, FastifyReply, RouteShorthandOptions } from "fastify";
import type { Checkpoints, OpKind } from "../../checkpoint/orchestrator.ts";
import { CheckpointRoutes as C } from "../../protocol/checkpoint-schemas.ts";
import { isFleetlinkError } from "../../protocol/errors.ts";

/** Route body limits in bytes: a few ids need far less than the hub's bulk-instruction limit. */
const SMALL_BODY = 1024;
const HOSTS_BODY = 2 * 1024 * 1024;

/**
 * Checkpoint routes (coordinator token): host roles, push/pull with status, list, standby activation.
 * `admin` is spread into every route's options: authentication in `onRequest` (before the body is read) or
 * `preHandler`.
 */
export const registerCheckpointRoutes = (
  app: FastifyInstance,
  cp: Checkpoints,
  admin: Pick<RouteShorthandOptions, "onRequest" | "preHandler">,
): void => {
  // Response schemas document the answers; they must not filter them (see registerRoutes).
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
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
      bodyLimit: HOSTS_BODY,
      schema: C.assign,
    },
    async (req) => {
      const b = req.body as { hosts: string[]; standby?: { hostIdx: number; nodeId: string }[] };
      return cp.assign(run(req), b.hosts, b.standby);
    },
  );

  app.get("/v1/runs/:run/hosts", { ...admin, schema: C.roles }, async (req) => ({
    roles: await cp.roles(run(req)),
  }));

  app.post(
    "/v1/runs/:run/hosts/:host/activate",
    {
      ...admin,
      bodyLimit: SMALL_BODY,
      schema: C.activate,
    },
    async (req) => ({
      roles: await cp.activate(run(req), Number.parseInt((req.params as { host: string }).host, 10)),
    }),
  );

  app.post(
    "/v1/runs/:run/checkpoints/push",
    { ...admin, bodyLimit: SMALL_BODY, schema: C.push },
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
      bodyLimit: SMALL_BODY,
      schema: C.pull,
    },
    async (req, reply) => {
      const b = req.body as { id: string; allowRoleChanges?: boolean };
      try {
        const { id } = await cp.startPull(run(req), b.id, { allowRoleChanges: b.allowRoleChanges });
        return reply.code(202).send({ id });
      } catch (e) {
        return conflict(e, reply);
      }
    },
  );

  for (const kind of ["push", "pull"] as OpKind[])
    app.get(`/v1/runs/:run/checkpoints/${kind}_status`, { ...admin, schema: C.status(kind) }, async (req) =>
      cp.status(run(req), kind),
    );

  app.get("/v1/runs/:run/checkpoints/takeover_status", { ...admin, schema: C.takeover }, async (req) => ({
    hosts: await cp.takeoverStatus(run(req)),
  }));

  app.get("/v1/runs/:run/checkpoints", { ...admin, schema: C.list }, async (req) => ({
    checkpoints: (await cp.list(run(req))).map((m) => ({
      id: m.id,
      createdAt: m.createdAt,
      nHosts: m.nHosts,
      bytes: m.hosts.reduce((n, h) => n + h.size, 0),
    })),
  }));
};
