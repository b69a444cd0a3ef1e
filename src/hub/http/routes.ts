import type { FastifyInstance } from "fastify";
import { invalid, isFleetlinkError } from "../../protocol/errors.ts";
import { HttpRoutes as R } from "../../protocol/http-schemas.ts";
import { MAX_JSON_DEPTH, tooDeep } from "../../protocol/limits.ts";
import type { Instruction, NodeRecord, RunStatus } from "../../protocol/types.ts";
import { encodePayload, toWireResult } from "../../protocol/wire.ts";
import type { EnrollTokenRecord, NewInstruction, Store } from "../../store/store.ts";
import { type AccessContext, enrollerOf, requireAdmin, requireEnroll } from "./access.ts";
import { Admission, MAX_ENROLLING, RETRY_AFTER_S } from "./admission.ts";
import { formatEnrollToken, hashCredential, newCredential, newSecret } from "./auth.ts";

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
  withdraw: (runId: string, ids: readonly string[]) => Promise<string[]>;
  stats: () => Record<string, number>;
  /** A node was unregistered here: close its stream on this replica at once. */
  unregistered: (nodeId: string) => void;
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
  const admin = { onRequest: requireAdmin(ctx) };
  const enrolling = new Admission(MAX_ENROLLING, "enrolments");
  // Response schemas document the answers (OpenAPI); they must not filter them. fast-json-stringify would
  // silently drop any property a schema forgets, so answers are encoded as they are.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  app.get("/healthz", { schema: R.healthz }, async () => ({ ok: true }));
  app.get("/readyz", { schema: R.readyz }, async (_req, reply) => {
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
      onRequest: requireEnroll(ctx),
      bodyLimit: 4096,
      config: { rateLimit: { max: ctx.enrollRateLimit.max, timeWindow: ctx.enrollRateLimit.windowMs } },
      schema: R.enroll,
    },
    async (req, reply) => {
      const b = req.body as { name: string; heartbeatIntervalMs?: number };
      const by = enrollerOf(req);
      const credential = newCredential();
      const node = await enrolling
        .run(async () => {
          // A stored token is checked and one of its uses taken atomically (two replicas cannot both take the last).
          if (by.kind === "stored") await store.useEnrollToken(by.id, by.secretHash);
          return store.registerNode({
            name: b.name,
            heartbeatIntervalMs: b.heartbeatIntervalMs ?? ctx.heartbeatIntervalMs,
            credentialHash: hashCredential(credential),
            approved: !ctx.manualApproval,
          });
        })
        .catch((e) => {
          if (isFleetlinkError(e) && e.kind === "RATE_LIMITED")
            reply.header("retry-after", String(RETRY_AFTER_S));
          throw e;
        });
      return reply.code(201).send({ node: publicNode(node), credential });
    },
  );

  app.get("/v1/nodes", { ...admin, ...noBody, schema: R.listNodes }, async () => ({
    nodes: (await store.listNodes()).map(publicNode),
  }));

  app.get("/v1/nodes/:node", { ...admin, ...noBody, schema: R.getNode }, async (req) => ({
    node: publicNode(await store.getNode((req.params as { node: string }).node)),
  }));

  app.post("/v1/nodes/:node/approve", { ...admin, ...noBody, schema: R.approveNode }, async (req) => {
    const n = await store.approveNode((req.params as { node: string }).node);
    ctx.changed();
    return { node: publicNode(n) };
  });

  app.post("/v1/enroll-tokens", { ...admin, bodyLimit: 4096, schema: R.createToken }, async (req, reply) => {
    const b = (req.body ?? {}) as { label?: string; ttlMs?: number; uses?: number };
    const secret = newSecret();
    const t = await store.createEnrollToken({
      secretHash: hashCredential(secret),
      label: b.label ?? null,
      // The store's clock (the database's), not this replica's, so skewed replicas agree on expiry.
      expiresAt: b.ttlMs === undefined ? null : (await store.now()) + b.ttlMs,
      uses: b.uses ?? null,
    });
    // The secret is shown once; the store keeps only its hash.
    return reply.code(201).send({ token: publicToken(t), secret: formatEnrollToken(t.id, secret) });
  });

  app.get("/v1/enroll-tokens", { ...admin, ...noBody, schema: R.listTokens }, async () => ({
    tokens: (await store.listEnrollTokens()).map(publicToken),
  }));

  app.delete("/v1/enroll-tokens/:token", { ...admin, ...noBody, schema: R.revokeToken }, async (req) => ({
    token: publicToken(await store.revokeEnrollToken((req.params as { token: string }).token)),
  }));

  app.delete("/v1/nodes/:node", { ...admin, ...noBody, schema: R.unregisterNode }, async (req) => {
    const { node } = req.params as { node: string };
    const n = await store.unregisterNode(node);
    // Its stream or HTTP session here ends now (4001), not at its next heartbeat; other replicas find out at
    // their next renewal.
    ctx.unregistered(n.id);
    ctx.changed();
    return { node: publicNode(n) };
  });

  app.post("/v1/runs", { ...admin, ...noBody, schema: R.createRun }, async (_req, reply) =>
    reply.code(201).send({ run: await store.createRun() }),
  );

  app.get("/v1/runs", { ...admin, ...noBody, schema: R.listRuns }, async (req) => {
    const q = req.query as { status?: RunStatus; limit?: string };
    return { runs: await store.listRuns({ status: q.status, limit: queryInt(q.limit) }) };
  });

  app.get("/v1/runs/:run", { ...admin, ...noBody, schema: R.getRun }, async (req) => ({
    run: await store.getRun((req.params as { run: string }).run),
  }));

  app.post("/v1/runs/:run/status", { ...admin, schema: R.transitionRun }, async (req) => {
    const b = req.body as { from: RunStatus; to: RunStatus; reason?: string };
    return { run: await store.transitionRun((req.params as { run: string }).run, b.from, b.to, b.reason) };
  });

  app.post("/v1/runs/:run/instructions", { ...admin, schema: R.pushInstructions }, async (req, reply) => {
    const { items } = req.body as { items: (Record<string, unknown> & { payload?: unknown })[] };
    for (const [i, it] of items.entries())
      if (tooDeep(it.payload))
        throw invalid(`items[${i}].payload`, `nests deeper than ${MAX_JSON_DEPTH} levels`);
    const pushed = await ctx.push(
      (req.params as { run: string }).run,
      items.map((it) => ({ ...it, payload: encodePayload(it.payload) }) as never),
    );
    return reply.code(201).send({
      instructions: pushed.map((i) => ({ id: i.id, dst: i.dst, expiresAt: i.expiresAt })),
    });
  });

  app.get("/v1/runs/:run/instructions", { ...admin, ...noBody, schema: R.listInstructions }, async (req) => {
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

  app.post("/v1/runs/:run/instructions/withdraw", { ...admin, schema: R.withdraw }, async (req) => {
    const { run } = req.params as { run: string };
    const withdrawn = await ctx.withdraw(run, (req.body as { ids: string[] }).ids);
    await ensureRun(store, run, withdrawn.length);
    return { withdrawn };
  });

  app.post("/v1/runs/:run/instructions/query", { ...admin, schema: R.queryInstructions }, async (req) => {
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

  app.post("/v1/runs/:run/replies/query", { ...admin, schema: R.queryReplies }, async (req) => {
    const { instructionIds } = req.body as { instructionIds: string[] };
    const { run } = req.params as { run: string };
    const replies = await store.getReplies(run, instructionIds);
    await ensureRun(store, run, replies.length);
    return { replies: replies.map(toWireResult) };
  });

  app.post("/v1/runs/:run/replies/claim", { ...admin, schema: R.claimReplies }, async (req) => {
    const b = (req.body ?? {}) as { limit?: number; instructionIds?: string[] };
    const { run } = req.params as { run: string };
    const replies = await store.claimReplies({ runId: run, ...b });
    await ensureRun(store, run, replies.length);
    return { replies: replies.map(toWireResult) };
  });

  app.get("/v1/stats", { ...admin, ...noBody, schema: R.stats }, async () => ({
    store: await store.stats(),
    hub: ctx.stats(),
  }));
};
