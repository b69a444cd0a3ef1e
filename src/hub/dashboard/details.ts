// The dashboard's pages that go deeper than the feed: one call node by node, one node's recent instructions, and
// the fleet's rates over the last hour. Plain GET routes (read access), polled by the page while it shows them.
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { FleetlinkError } from "../../protocol/errors.ts";
import { routeSchema } from "../../protocol/route-doc.ts";
import { Uuid } from "../../protocol/schemas.ts";
import type { InstructionOutcome, Outcome, Store } from "../../store/store.ts";
import { principalOf, tenantFilter } from "../http/principal.ts";
import { type PayloadView, payloadView } from "./payload-view.ts";
import type { Rates } from "./rates.ts";

/** Payload bytes read and shown per payload on the call page. */
export const PREVIEW_BYTES = 4096;
/** Nodes shown on one call's page (one more is read, to know there are more). */
const MAX_CALL_NODES = 999;

export type NodeState = "pending" | "leased" | "ok" | "error";

export interface CallNodeDetail {
  instructionId: string;
  nodeId: string;
  /** The node's name; null if the node is gone. */
  name: string | null;
  state: NodeState;
  attempts: number;
  maxAttempts: number;
  pushedAt: number;
  /** First delivery to the node (null: not delivered yet, or pushed before the store kept it). */
  deliveredAt: number | null;
  /** While leased: when the lease runs out. */
  leaseUntil: number | null;
  repliedAt: number | null;
  /** repliedAt − pushedAt. */
  latencyMs: number | null;
  payload: PayloadView;
  /** The handler's result (null until it replied, and for an error). */
  result: PayloadView | null;
  error: { code: string; message: string } | null;
}

export interface CallDetail {
  runId: string;
  id: string;
  method: string;
  createdAt: number;
  /** ms from the push to the first and the last reply (null: none yet). */
  firstReplyMs: number | null;
  lastReplyMs: number | null;
  ok: number;
  error: number;
  open: number;
  /** Payload bytes shown per payload. */
  previewBytes: number;
  nodes: CallNodeDetail[];
  /** More nodes than were read. */
  truncated: boolean;
}

export interface NodeInstructionView {
  id: string;
  runId: string;
  /** The call it belongs to (its groupId, or its own id): the call page's id. */
  callId: string;
  method: string;
  state: NodeState;
  attempts: number;
  maxAttempts: number;
  createdAt: number;
  deliveredAt: number | null;
  repliedAt: number | null;
  latencyMs: number | null;
  error: { code: string; message: string } | null;
  payloadBytes: number;
  resultBytes: number | null;
}

const stateOf = (i: InstructionOutcome): NodeState =>
  i.reply ? (i.reply.error ? "error" : "ok") : i.state === "leased" ? "leased" : "pending";

/** One call node by node, or null if the run has no such call. */
export const callDetail = async (store: Store, runId: string, id: string): Promise<CallDetail | null> => {
  const list = await store.callInstructions(runId, id, {
    limit: MAX_CALL_NODES + 1,
    previewBytes: PREVIEW_BYTES,
  });
  if (list.length === 0) return null;
  const truncated = list.length > MAX_CALL_NODES;
  if (truncated) list.length = MAX_CALL_NODES;
  const run = await store.getRun(runId);
  const names = new Map((await store.listNodes({ tenant: run.tenant })).map((n) => [n.id, n.name]));
  const first = list[0]!;
  const detail: CallDetail = {
    runId,
    id,
    method: first.method,
    createdAt: first.createdAt,
    firstReplyMs: null,
    lastReplyMs: null,
    ok: 0,
    error: 0,
    open: 0,
    previewBytes: PREVIEW_BYTES,
    nodes: [],
    truncated,
  };
  for (const i of list) {
    const state = stateOf(i);
    const r = i.reply;
    if (state === "ok") detail.ok++;
    else if (state === "error") detail.error++;
    else detail.open++;
    if (r) {
      const ms = r.createdAt - first.createdAt;
      detail.firstReplyMs = detail.firstReplyMs === null ? ms : Math.min(detail.firstReplyMs, ms);
      detail.lastReplyMs = detail.lastReplyMs === null ? ms : Math.max(detail.lastReplyMs, ms);
    }
    detail.nodes.push({
      instructionId: i.id,
      nodeId: i.dst,
      name: names.get(i.dst) ?? null,
      state,
      attempts: i.attempts,
      maxAttempts: i.maxAttempts,
      pushedAt: i.createdAt,
      deliveredAt: i.deliveredAt,
      leaseUntil: i.leaseUntil,
      repliedAt: r?.createdAt ?? null,
      latencyMs: r ? r.createdAt - i.createdAt : null,
      payload: payloadView(i.payload, i.payloadBytes, PREVIEW_BYTES),
      result: r && !r.error ? payloadView(r.payload, r.payloadBytes, PREVIEW_BYTES) : null,
      error: r?.error ?? null,
    });
  }
  return detail;
};

const nodeInstructionView = (i: InstructionOutcome): NodeInstructionView => ({
  id: i.id,
  runId: i.runId,
  callId: i.groupId ?? i.id,
  method: i.method,
  state: stateOf(i),
  attempts: i.attempts,
  maxAttempts: i.maxAttempts,
  createdAt: i.createdAt,
  deliveredAt: i.deliveredAt,
  repliedAt: i.reply?.createdAt ?? null,
  latencyMs: i.reply ? i.reply.createdAt - i.createdAt : null,
  error: i.reply?.error ?? null,
  payloadBytes: i.payloadBytes,
  resultBytes: i.reply && !i.reply.error ? i.reply.payloadBytes : null,
});

const Detail = Type.Object({}, { additionalProperties: true });

export const registerDashboardReads = (
  app: FastifyInstance,
  o: { store: Store; rates: Rates | undefined },
): void => {
  const { store } = o;
  const read = { config: { access: "read" }, bodyLimit: 1024 } as const;

  app.get(
    "/v1/runs/:run/calls/:id",
    {
      ...read,
      schema: routeSchema({
        summary: "One call node by node (dashboard)",
        description:
          "The instructions of one call (those sharing the groupId `id`, or the instruction `id` if it has no " +
          "group), with each node's name, state, attempts, push, first delivery and reply times, latency, its payload and result " +
          `(decoded JSON or text, cut to ${PREVIEW_BYTES} bytes with the full size stated; blob references as ` +
          "hash and size) and error code and message. At most 999 nodes. 404 RUN_NOT_FOUND for an unknown run, " +
          "INSTRUCTION_NOT_FOUND for an unknown call. See docs/dashboard.md.",
        tags: ["dashboard"],
        auth: "admin",
        errors: ["RUN_NOT_FOUND", "INSTRUCTION_NOT_FOUND"],
        params: Type.Object({ run: Uuid, id: Uuid }),
        response: { 200: Type.Object({ call: Detail }) },
      }),
    },
    async (req) => {
      const { run, id } = req.params as { run: string; id: string };
      const call = await callDetail(store, run, id);
      if (!call)
        throw new FleetlinkError("INSTRUCTION_NOT_FOUND", `no call ${id} in run ${run}`, { field: "id" });
      return { call };
    },
  );

  app.get(
    "/v1/nodes/:node/instructions",
    {
      ...read,
      schema: routeSchema({
        summary: "A node's recent instructions (dashboard)",
        description:
          "The node's newest instructions across runs, newest first: method, run, call, state, attempts, push and " +
          "reply times, latency, error, payload and result sizes. Filters: `method`, `run`, `outcome` (ok, error, " +
          "pending: no reply yet); `limit` 1..1000 (default 100). Looks among the store's newest 50,000 " +
          "instructions (a bounded scan, no index by node): an older instruction is not found. See docs/dashboard.md.",
        tags: ["dashboard"],
        auth: "admin",
        errors: ["NODE_NOT_FOUND"],
        params: Type.Object({ node: Uuid }),
        querystring: Type.Object(
          {
            method: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
            run: Type.Optional(Uuid),
            outcome: Type.Optional(
              Type.Union([Type.Literal("ok"), Type.Literal("error"), Type.Literal("pending")]),
            ),
            // Query values arrive as strings; the store checks the range.
            limit: Type.Optional(Type.String({ pattern: "^[0-9]{1,4}$" })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ instructions: Type.Array(Detail) }) },
      }),
    },
    async (req) => {
      const { node } = req.params as { node: string };
      const q = req.query as { method?: string; run?: string; outcome?: Outcome; limit?: string };
      const list = await store.nodeInstructions(node, {
        method: q.method,
        runId: q.run,
        outcome: q.outcome,
        limit: q.limit === undefined ? undefined : Number(q.limit),
      });
      // An unknown node is a 404, not an empty history (read only when there is nothing to show).
      if (list.length === 0) await store.getNode(node);
      return { instructions: list.map(nodeInstructionView) };
    },
  );

  app.get(
    "/v1/failures",
    {
      ...read,
      schema: routeSchema({
        summary: "The newest error replies (dashboard)",
        description:
          "The newest error replies, newest first, among the store's newest 50,000 replies: run, node, call " +
          "(its groupId, or the instruction id), method, error code and message, time. `limit` 1..100 " +
          "(default 10). A tenant-scoped token sees its tenant's runs' replies only. See docs/dashboard.md.",
        tags: ["dashboard"],
        auth: "admin",
        querystring: Type.Object(
          { limit: Type.Optional(Type.String({ pattern: "^[0-9]{1,3}$" })) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ failures: Type.Array(Detail) }) },
      }),
    },
    async (req) => {
      const q = req.query as { limit?: string };
      const failures = await store.recentFailures({
        limit: q.limit === undefined ? undefined : Number(q.limit),
        tenant: tenantFilter(principalOf(req)),
      });
      return { failures };
    },
  );

  app.get(
    "/v1/rates",
    {
      ...read,
      schema: routeSchema({
        summary: "Fleet-wide rates over the last hour (dashboard)",
        description:
          "Pushes, replies and error replies per second, one sample per interval (10 s) for up to an hour, " +
          "from store-wide counters: every replica shows the same fleet-wide figures, each from its own start " +
          "(a replica started 5 minutes ago has 5 minutes of history). `samples` is null for a tenant-scoped " +
          "token (the counters add up every tenant's work). See docs/dashboard.md.",
        tags: ["dashboard"],
        auth: "admin",
        response: {
          200: Type.Object({
            intervalMs: Type.Integer(),
            startedAt: Type.Integer(),
            samples: Type.Union([
              Type.Array(
                Type.Object({
                  at: Type.Integer(),
                  pushes: Type.Number(),
                  replies: Type.Number(),
                  errors: Type.Number(),
                }),
              ),
              Type.Null(),
            ]),
          }),
        },
      }),
    },
    async (req) => {
      const rates = o.rates;
      const base = { intervalMs: rates?.intervalMs ?? 0, startedAt: rates?.startedAt ?? 0 };
      if (!rates || principalOf(req).tenant !== null) return { ...base, samples: null };
      return { ...base, samples: rates.samples() };
    },
  );
};
