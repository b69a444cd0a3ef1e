/** The admin token lives in sessionStorage: it is gone when the tab closes, and never put in a URL. */
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

/** Calls the hub's API with the admin token; a non-2xx answer becomes an ApiError with the hub's code. */
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

/** Checks a token before it is kept: the hub answers 401 or 403 for anything but the admin token. */
export const checkToken = async (token: string): Promise<void> => {
  await api("/v1/stats", {}, token);
};

export const approveNode = (id: string) =>
  api(`/v1/nodes/${encodeURIComponent(id)}/approve`, { method: "POST" });
