import type { CallDetail, NodeInstructionView } from "../../src/hub/dashboard/details.ts";
import type { RateSample } from "../../src/hub/dashboard/rates.ts";
import type { Run } from "../../src/protocol/types.ts";
import type { AuditEntry, RecentFailure } from "../../src/store/types.ts";

/** The token lives in sessionStorage: it is gone when the tab closes, and never put in a URL. */
const KEY = "fleetlink.token";

export const getToken = (): string | null => sessionStorage.getItem(KEY);
export const setToken = (t: string): void => sessionStorage.setItem(KEY, t);
export const clearToken = (): void => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the hub's API with the logged-in token; a non-2xx answer becomes an ApiError with the hub's code. */
export const api = async (path: string, init: RequestInit = {}, token = getToken()): Promise<unknown> => {
  const res = await fetch(path, {
    ...init,
    headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${token ?? ""}` },
  });
  const body = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
  if (!res.ok)
    throw new ApiError(
      res.status,
      body?.error?.code ?? `HTTP_${res.status}`,
      body?.error?.message ?? res.statusText,
    );
  return body;
};

/** Who a token stands for (GET /v1/whoami). */
export interface Me {
  id: string;
  label: string | null;
  role: string;
  tenant: string | null;
}

/**
 * Checks a token before it is kept and says whose it is: the hub answers 401 for an unknown one and 403 for one
 * that may not read (metrics, enrollment, node credentials).
 */
export const whoami = async (token = getToken()): Promise<Me> =>
  ((await api("/v1/whoami", {}, token)) as { principal: Me }).principal;

/**
 * What a role may do on the page: the hub checks the same on every request (403 otherwise). `manage` (approve,
 * unregister) needs admin; `drive` (finish a run, withdraw a call) admin or coordinator (docs/api.md).
 */
export const canManage = (me: Me | null): boolean => me?.role === "admin";
export const canDrive = (me: Me | null): boolean => me?.role === "admin" || me?.role === "coordinator";
export const NEEDS_ADMIN = "needs role admin";
export const NEEDS_DRIVE = "needs role admin or coordinator";

/** An audit entry as GET /v1/audit answers it (the store's shape). */
export type { AuditEntry };

export const listAudit = async (before: number | null) =>
  (await api(`/v1/audit?limit=100${before === null ? "" : `&before=${before}`}`)) as {
    entries: AuditEntry[];
    next: number | null;
  };

/** Stored tokens (GET /v1/tokens, admins; a tenant's admin gets its tenant's): the audit view names them by label. */
export const listTokens = async () =>
  ((await api("/v1/tokens")) as { tokens: { id: string; label: string | null }[] }).tokens;

export const approveNode = (id: string) =>
  api(`/v1/nodes/${encodeURIComponent(id)}/approve`, { method: "POST" });

export const unregisterNode = (id: string) =>
  api(`/v1/nodes/${encodeURIComponent(id)}`, { method: "DELETE" });

const post = (path: string, body: unknown) =>
  api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** Finishes a run (compare-and-set from the status the page shows). */
export const finishRun = (runId: string, from: string) =>
  post(`/v1/runs/${encodeURIComponent(runId)}/status`, {
    from,
    to: "finished",
    reason: "finished from the dashboard",
  });

/** Withdraws instructions that have not ended (POST …/instructions/withdraw), leaving the CANCELLED replies for the coordinator still waiting on the call. */
export const withdraw = async (runId: string, ids: string[]) =>
  (
    (await post(`/v1/runs/${encodeURIComponent(runId)}/instructions/withdraw`, { ids, deliver: true })) as {
      withdrawn: string[];
    }
  ).withdrawn;

export const getCall = async (runId: string, id: string) =>
  (
    (await api(`/v1/runs/${encodeURIComponent(runId)}/calls/${encodeURIComponent(id)}`)) as {
      call: CallDetail;
    }
  ).call;

export interface NodeFilter {
  method?: string;
  run?: string;
  outcome?: "ok" | "error" | "pending";
}

export const nodeInstructions = async (id: string, f: NodeFilter) => {
  const q = new URLSearchParams({ limit: "50" });
  for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
  return (
    (await api(`/v1/nodes/${encodeURIComponent(id)}/instructions?${q}`)) as {
      instructions: NodeInstructionView[];
    }
  ).instructions;
};

/** Runs of one status (or any), newest first, at most 100: the hub filters (GET /v1/runs). */
export const listRuns = async (status: string) =>
  (
    (await api(`/v1/runs?limit=100${status ? `&status=${encodeURIComponent(status)}` : ""}`)) as {
      runs: Run[];
    }
  ).runs;

export const getRates = async () =>
  (await api("/v1/rates")) as { intervalMs: number; startedAt: number; samples: RateSample[] | null };

/** The newest error replies, fleet-wide (of the token's tenant), newest first (GET /v1/failures). */
export const recentFailures = async (limit = 10) =>
  ((await api(`/v1/failures?limit=${limit}`)) as { failures: RecentFailure[] }).failures;
