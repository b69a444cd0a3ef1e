import type { FastifyInstance, FastifyReply, FastifyRequest, RouteShorthandOptions } from "fastify";
import type { Checkpoints, OpKind } from "../../checkpoint/orchestrator.ts";
import { CheckpointRoutes as C } from "../../protocol/checkpoint-schemas.ts";
import { isFleetlinkError } from "../../protocol/errors.ts";
import type { AuditSink } from "../http/access.ts";
import { maybePrincipalOf } from "../http/principal.ts";
import type { RunTenants } from "../http/tenancy.ts";

/** Route body limits in bytes: a few ids need far less than the hub's bulk-instruction limit. */
const SMALL_BODY = 1024;
const HOSTS_BODY = 2 * 1024 * 1024;

export interface CheckpointRoutesOptions {
  /** Checks that hosts are nodes of the run's tenant. (Default: no check) */
  tenants?: RunTenants;
  audit?: AuditSink;
}

/**
 * Checkpoint routes: host roles, push/pull with status, list, standby activation. Reads need access "read",
 * the rest "drive" (the hub's access hook decides by `config.access`). `extra` is spread into every route's
 * options (tests add their own `onRequest` or `preHandler`). Hosts must be nodes of the run's tenant.
 */
export const registerCheckpointRoutes = (
  app: FastifyInstance,
  cp: Checkpoints,
  extra: Pick<RouteShorthandOptions, "onRequest" | "preHandler"> = {},
  o: CheckpointRoutesOptions = {},
): void => {
  const read = { ...extra, config: { access: "read" } } as const;
  const drive = { ...extra, config: { access: "drive" } } as const;
  const record = (req: FastifyRequest, action: string, detail?: Record<string, unknown>) => {
    const p = maybePrincipalOf(req);
    if (!p) return;
    const runId = run(req);
    // Under the run's tenant (read once, then cached), so the tenant's own admin sees an unscoped caller's
    // checkpoints in its audit log.
    const tenants = p.tenant === null ? o.tenants : undefined;
    if (!tenants) return o.audit?.record(p, action, runId, "ok", detail);
    void tenants.tenantOf(runId).then(
      (tenant) => o.audit?.record({ ...p, tenant }, action, runId, "ok", detail),
      () => o.audit?.record(p, action, runId, "ok", detail),
    );
  };
  /** NODE_NOT_FOUND naming hosts[i] (or standby[i].nodeId) for a node that is not of the run's tenant. */
  const ownNodes = async (runId: string, hosts: string[], standby: { nodeId: string }[] = []) => {
    if (!o.tenants) return;
    const tenant = await o.tenants.tenantOf(runId);
    await o.tenants.checkNodesOf(tenant, hosts, "hosts");
    await o.tenants.checkNodesOf(
      tenant,
      standby.map((s) => s.nodeId),
      "standby",
    );
  };
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
      ...drive,
      bodyLimit: HOSTS_BODY,
      schema: C.assign,
    },
    async (req) => {
      const b = req.body as { hosts: string[]; standby?: { hostIdx: number; nodeId: string }[] };
      await ownNodes(run(req), b.hosts, b.standby);
      const r = await cp.assign(run(req), b.hosts, b.standby);
      record(req, "checkpoint.assign", { hosts: b.hosts.length });
      return r;
    },
  );

  app.get("/v1/runs/:run/hosts", { ...read, schema: C.roles }, async (req) => ({
    roles: await cp.roles(run(req)),
  }));

  app.post(
    "/v1/runs/:run/hosts/:host/activate",
    {
      ...drive,
      bodyLimit: SMALL_BODY,
      schema: C.activate,
    },
    async (req) => {
      const host = Number.parseInt((req.params as { host: string }).host, 10);
      const roles = await cp.activate(run(req), host);
      record(req, "checkpoint.activate", { host });
      return { roles };
    },
  );

  app.post(
    "/v1/runs/:run/checkpoints/push",
    { ...drive, bodyLimit: SMALL_BODY, schema: C.push },
    async (req, reply) => {
      try {
        const { id } = await cp.startPush(run(req));
        record(req, "checkpoint.push", { id });
        return reply.code(202).send({ id });
      } catch (e) {
        return conflict(e, reply);
      }
    },
  );

  app.post(
    "/v1/runs/:run/checkpoints/pull",
    {
      ...drive,
      bodyLimit: SMALL_BODY,
      schema: C.pull,
    },
    async (req, reply) => {
      const b = req.body as { id: string; allowRoleChanges?: boolean };
      try {
        const { id } = await cp.startPull(run(req), b.id, { allowRoleChanges: b.allowRoleChanges });
        record(req, "checkpoint.pull", { id });
        return reply.code(202).send({ id });
      } catch (e) {
        return conflict(e, reply);
      }
    },
  );

  for (const kind of ["push", "pull"] as OpKind[])
    app.get(`/v1/runs/:run/checkpoints/${kind}_status`, { ...read, schema: C.status(kind) }, async (req) =>
      cp.status(run(req), kind),
    );

  app.get("/v1/runs/:run/checkpoints/takeover_status", { ...read, schema: C.takeover }, async (req) => ({
    hosts: await cp.takeoverStatus(run(req)),
  }));

  app.get("/v1/runs/:run/checkpoints", { ...read, schema: C.list }, async (req) => ({
    checkpoints: (await cp.list(run(req))).map((m) => ({
      id: m.id,
      createdAt: m.createdAt,
      nHosts: m.nHosts,
      bytes: m.hosts.reduce((n, h) => n + h.size, 0),
    })),
  }));
};
