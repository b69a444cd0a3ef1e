import type { FastifyInstance } from "fastify";
import { FleetlinkError, invalid, isFleetlinkError } from "../../protocol/errors.ts";
import { HttpRoutes as R } from "../../protocol/http-schemas.ts";
import { MAX_JSON_DEPTH, tooDeep } from "../../protocol/limits.ts";
import { DEFAULT_TENANT, type Instruction, type NodeRecord, type RunStatus } from "../../protocol/types.ts";
import { encodePayload, toWireResult } from "../../protocol/wire.ts";
import type { EnrollTokenRecord, NewInstruction, Store, WithdrawOptions } from "../../store/store.ts";
import { pushSpan } from "../delivery/trace-spans.ts";
import { type AccessContext, type AuditSink, enrollerOf } from "./access.ts";
import { Admission, MAX_ENROLLING, RETRY_AFTER_S } from "./admission.ts";
import { formatEnrollToken, hashCredential, newCredential, newSecret } from "./auth.ts";
import { about, principalOf, tenantFilter } from "./principal.ts";
import { type RunTenants, tenantFor } from "./tenancy.ts";

/** Query values arrive as digit strings (the schema checks that); the store checks the range. */
const queryInt = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));

export interface RouteContext extends AccessContext {
  store: Store;
  heartbeatIntervalMs: number;
  /** New nodes wait for `POST /v1/nodes/:node/approve` before they get work. */
  manualApproval: boolean;
  /** Enrollments per client address per window. */
  enrollRateLimit: { max: number; windowMs: number };
  /** Called after a change this replica made, so its own streams react at once (targeted when possible). */
  changed: (dsts?: readonly string[]) => void;
  /** Pushes a run's instructions and gets them to their nodes (see createHub's `push`). */
  push: (runId: string, items: NewInstruction[]) => Promise<Instruction[]>;
  /** Withdraws a run's instructions and tells the nodes held here to stop (see createHub's `withdraw`). */
  withdraw: (runId: string, ids: readonly string[], opts?: WithdrawOptions) => Promise<string[]>;
  stats: () => Record<string, number>;
  /** A node was unregistered here: close its stream on this replica at once. */
  unregistered: (nodeId: string) => void;
  /** Tenants of runs (cached) and the tenant checks of nodes. */
  tenants: RunTenants;
  audit: AuditSink;
}

const publicNode = ({ credentialHash: _, ...n }: NodeRecord) => n;
const publicToken = ({ secretHash: _, ...t }: EnrollTokenRecord) => t;
/** Routes that take no body refuse one instead of reading megabytes of it. */
const noBody = { bodyLimit: 1024 } as const;

/** A run that does not exist is a 404, not an empty answer. */
const ensureRun = async (store: Store, runId: string, found: number) => {
  if (found === 0) await store.getRun(runId);
};

/**
 * The versioned HTTP API for coordinators and admins (admin token) and node enrollment (enrollment tokens).
 * Each route's schema (validation and its OpenAPI description) comes from src/protocol/http-schemas.ts.
 */
export const registerRoutes = (app: FastifyInstance, ctx: RouteContext): void => {
  const { store } = ctx;
  const { audit, tenants } = ctx;
  // What each route needs; the access hook (access.ts) authenticates and authorizes by it before anything else.
  const read = { config: { access: "read" } } as const;
  const drive = { config: { access: "drive" } } as const;
  const manage = { config: { access: "manage" } } as const;
  const pub = { config: { access: "public" } } as const;
  const enrolling = new Admission(MAX_ENROLLING, "enrolments");
  // Response schemas document the answers (OpenAPI); they must not filter them. fast-json-stringify would
  // silently drop any property a schema forgets, so answers are encoded as they are.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  app.get("/healthz", { ...pub, schema: R.healthz }, async () => ({ ok: true }));
  app.get("/readyz", { ...pub, schema: R.readyz }, async (_req, reply) => {
    try {
      // Answers within a bound even when the store hangs (a partitioned database).
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        store.now(),
        new Promise((_, fail) => {
          timer = setTimeout(() => fail(new Error("store did not answer within 2000 ms")), 2000);
        }),
      ]).finally(() => clearTimeout(timer));
      return { ok: true };
    } catch (e) {
      return reply.code(503).send({ ok: false, error: String((e as Error).message) });
    }
  });

  app.post(
    "/v1/nodes/enroll",
    {
      bodyLimit: 4096,
      config: {
        access: "enroll",
        rateLimit: { max: ctx.enrollRateLimit.max, timeWindow: ctx.enrollRateLimit.windowMs },
      },
      schema: R.enroll,
    },
    async (req, reply) => {
      const b = req.body as { name: string; heartbeatIntervalMs?: number };
      const by = enrollerOf(req);
      const credential = newCredential();
      const node = await enrolling
        .run(async () => {
          // A stored token is checked and one of its uses taken atomically (two replicas cannot both take the last).
          // The node joins the token's tenant (the static token's: the default tenant).
          const tenant =
            by.kind === "stored" ? (await store.useEnrollToken(by.id, by.secretHash)).tenant : DEFAULT_TENANT;
          return store.registerNode({
            name: b.name,
            heartbeatIntervalMs: b.heartbeatIntervalMs ?? ctx.heartbeatIntervalMs,
            credentialHash: hashCredential(credential),
            approved: !ctx.manualApproval,
            tenant,
          });
        })
        .catch((e) => {
          if (isFleetlinkError(e) && e.kind === "RATE_LIMITED")
            reply.header("retry-after", String(RETRY_AFTER_S));
          throw e;
        });
      const p = principalOf(req);
      audit.record({ ...p, tenant: node.tenant }, "node.enroll", node.id, "ok", { name: node.name });
      return reply.code(201).send({ node: publicNode(node), credential });
    },
  );

  // A tenant-scoped caller's `:node` and `:run` are checked by the access hook's preHandler (404 if another
  // tenant's); lists are filtered by the store.
  app.get("/v1/nodes", { ...read, ...noBody, schema: R.listNodes }, async (req) => ({
    nodes: (await store.listNodes({ tenant: tenantFilter(principalOf(req)) })).map(publicNode),
  }));

  app.get("/v1/nodes/:node", { ...read, ...noBody, schema: R.getNode }, async (req) => ({
    node: publicNode(await store.getNode((req.params as { node: string }).node)),
  }));

  app.post("/v1/nodes/:node/approve", { ...manage, ...noBody, schema: R.approveNode }, async (req) => {
    const n = await store.approveNode((req.params as { node: string }).node);
    audit.record(about(principalOf(req), n.tenant), "node.approve", n.id, "ok");
    ctx.changed();
    return { node: publicNode(n) };
  });

  app.post("/v1/enroll-tokens", { ...manage, bodyLimit: 4096, schema: R.createToken }, async (req, reply) => {
    const b = (req.body ?? {}) as { label?: string; ttlMs?: number; uses?: number; tenant?: string };
    const p = principalOf(req);
    const tenant = tenantFor(p, b.tenant) ?? DEFAULT_TENANT;
    const secret = newSecret();
    const t = await store.createEnrollToken({
      secretHash: hashCredential(secret),
      label: b.label ?? null,
      // The store's clock (the database's), not this replica's, so skewed replicas agree on expiry.
      expiresAt: b.ttlMs === undefined ? null : (await store.now()) + b.ttlMs,
      uses: b.uses ?? null,
      tenant,
    });
    audit.record(about(p, tenant), "enroll-token.create", t.id, "ok", { tenant, label: t.label });
    // The secret is shown once; the store keeps only its hash.
    return reply.code(201).send({ token: publicToken(t), secret: formatEnrollToken(t.id, secret) });
  });

  app.get("/v1/enroll-tokens", { ...manage, ...noBody, schema: R.listTokens }, async (req) => ({
    tokens: (await store.listEnrollTokens({ tenant: tenantFilter(principalOf(req)) })).map(publicToken),
  }));

  app.delete("/v1/enroll-tokens/:token", { ...manage, ...noBody, schema: R.revokeToken }, async (req) => {
    const { token } = req.params as { token: string };
    const p = principalOf(req);
    // Another tenant's token reads as unknown.
    if (
      p.tenant !== null &&
      !(await store.listEnrollTokens({ tenant: p.tenant })).some((t) => t.id === token)
    )
      throw new FleetlinkError("TOKEN_NOT_FOUND", "no such token", { field: "token" });
    const t = await store.revokeEnrollToken(token);
    audit.record(about(p, t.tenant), "enroll-token.revoke", t.id, "ok");
    return { token: publicToken(t) };
  });

  app.delete("/v1/nodes/:node", { ...manage, ...noBody, schema: R.unregisterNode }, async (req) => {
    const { node } = req.params as { node: string };
    const n = await store.unregisterNode(node);
    audit.record(about(principalOf(req), n.tenant), "node.unregister", n.id, "ok");
    // Its stream or HTTP session here ends now (4001), not at its next heartbeat; other replicas find out at
    // their next renewal.
    ctx.unregistered(n.id);
    ctx.changed();
    return { node: publicNode(n) };
  });

  // The body is optional; if there is one, it must be a JSON object `{ tenant? }` (null, arrays, strings: 400).
  const noBodyIsEmpty = async (req: { body: unknown; headers: Record<string, unknown> }) => {
    if (req.body === undefined) req.body = {};
  };
  app.post(
    "/v1/runs",
    { ...drive, bodyLimit: 1024, preValidation: noBodyIsEmpty, schema: R.createRun },
    async (req, reply) => {
      const p = principalOf(req);
      const tenant = tenantFor(p, (req.body as { tenant?: string } | undefined)?.tenant) ?? DEFAULT_TENANT;
      const run = await store.createRun({ tenant });
      tenants.remember(run.id, run.tenant);
      audit.record(about(p, tenant), "run.create", run.id, "ok", { tenant });
      return reply.code(201).send({ run });
    },
  );

  app.get("/v1/runs", { ...read, ...noBody, schema: R.listRuns }, async (req) => {
    const q = req.query as { status?: RunStatus; limit?: string };
    return {
      runs: await store.listRuns({
        status: q.status,
        limit: queryInt(q.limit),
        tenant: tenantFilter(principalOf(req)),
      }),
    };
  });

  app.get("/v1/runs/:run", { ...read, ...noBody, schema: R.getRun }, async (req) => ({
    run: await store.getRun((req.params as { run: string }).run),
  }));

  app.post("/v1/runs/:run/status", { ...drive, schema: R.transitionRun }, async (req) => {
    const b = req.body as { from: RunStatus; to: RunStatus; reason?: string };
    const run = await store.transitionRun((req.params as { run: string }).run, b.from, b.to, b.reason);
    audit.record(about(principalOf(req), run.tenant), "run.status", run.id, "ok", { from: b.from, to: b.to });
    return { run };
  });

  app.post("/v1/runs/:run/instructions", { ...drive, schema: R.pushInstructions }, async (req, reply) => {
    const { items } = req.body as { items: (Record<string, unknown> & { payload?: unknown })[] };
    for (const [i, it] of items.entries())
      if (tooDeep(it.payload))
        throw invalid(`items[${i}].payload`, `nests deeper than ${MAX_JSON_DEPTH} levels`);
    const run = (req.params as { run: string }).run;
    const encoded = items.map((it) => ({ ...it, payload: encodePayload(it.payload) }) as never);
    // The hub's fleetlink.push span, as for a run-stream push (docs/tracing.md).
    const span = pushSpan(run, encoded);
    const pushed = await ctx.push(run, encoded).catch((e: unknown) => {
      span?.end(e);
      throw e;
    });
    span?.end();
    return reply.code(201).send({
      instructions: pushed.map((i) => ({ id: i.id, dst: i.dst, expiresAt: i.expiresAt })),
    });
  });

  app.get("/v1/runs/:run/instructions", { ...read, ...noBody, schema: R.listInstructions }, async (req) => {
    const { run } = req.params as { run: string };
    const ins = await store.listInstructions(run, {
      limit: queryInt((req.query as { limit?: string }).limit),
    });
    const replies = new Map(
      (
        await store.getReplies(
          run,
          ins.map((i) => i.id),
        )
      ).map((r) => [r.replyTo, r]),
    );
    return {
      instructions: ins.map((i) => {
        const r = replies.get(i.id);
        return {
          id: i.id,
          dst: i.dst,
          method: i.method,
          groupId: i.groupId,
          state: i.state,
          attempts: i.attempts,
          createdAt: i.createdAt,
          expiresAt: i.expiresAt,
          reply: r ? { id: r.id, error: r.error, createdAt: r.createdAt } : null,
        };
      }),
    };
  });

  app.post("/v1/runs/:run/instructions/withdraw", { ...drive, schema: R.withdraw }, async (req) => {
    const { run } = req.params as { run: string };
    const { ids, deliver } = req.body as { ids: string[]; deliver?: boolean };
    const withdrawn = await ctx.withdraw(run, ids, { deliver });
    if (deliver) {
      // An operator's withdraw of someone else's call (the coordinator's own cancels are traffic, not audited).
      // The run's tenant from the cache the access check keeps warm (RUN_NOT_FOUND for an unknown run).
      const tenant = await tenants.tenantOf(run);
      if (withdrawn.length > 0)
        audit.record(about(principalOf(req), tenant), "run.withdraw", run, "ok", { withdrawn });
    } else await ensureRun(store, run, withdrawn.length);
    return { withdrawn };
  });

  app.post("/v1/runs/:run/instructions/query", { ...read, schema: R.queryInstructions }, async (req) => {
    const { run } = req.params as { run: string };
    const ins = await store.getInstructions(run, (req.body as { ids: string[] }).ids);
    await ensureRun(store, run, ins.length);
    return {
      instructions: ins.map((i) => ({
        id: i.id,
        dst: i.dst,
        state: i.state,
        attempts: i.attempts,
        expiresAt: i.expiresAt,
      })),
    };
  });

  app.post("/v1/runs/:run/replies/query", { ...read, schema: R.queryReplies }, async (req) => {
    const { instructionIds } = req.body as { instructionIds: string[] };
    const { run } = req.params as { run: string };
    const replies = await store.getReplies(run, instructionIds);
    await ensureRun(store, run, replies.length);
    return { replies: replies.map(toWireResult) };
  });

  app.post("/v1/runs/:run/replies/claim", { ...drive, schema: R.claimReplies }, async (req) => {
    const b = (req.body ?? {}) as { limit?: number; instructionIds?: string[] };
    const { run } = req.params as { run: string };
    const replies = await store.claimReplies({ runId: run, ...b });
    await ensureRun(store, run, replies.length);
    return { replies: replies.map(toWireResult) };
  });

  app.get("/v1/stats", { ...read, ...noBody, schema: R.stats }, async (req) => {
    const tenant = principalOf(req).tenant;
    if (tenant === null)
      return { store: { backend: store.backend, ...(await store.stats()) }, hub: ctx.stats() };
    // Store-wide counts would tell a tenant about the others: its own nodes and runs only (runs: the newest 1000
    // of each status), and no instruction or reply counts.
    const count = <T>(xs: T[], key: (x: T) => string) => {
      const out: Record<string, number> = {};
      for (const x of xs) out[key(x)] = (out[key(x)] ?? 0) + 1;
      return out;
    };
    const runs = (
      await Promise.all(
        (["pending", "running", "finished"] as const).map((status) =>
          store.listRuns({ tenant, status, limit: 1000 }),
        ),
      )
    ).flat();
    return {
      store: {
        backend: store.backend,
        runs: count(runs, (r) => r.status),
        nodes: count(await store.listNodes({ tenant }), (n) => n.status),
        instructions: null,
        replies: null,
      },
      hub: {},
    };
  });
};
