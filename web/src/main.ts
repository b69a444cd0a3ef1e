import { html } from "htm/preact";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { Snapshot } from "../../src/hub/dashboard/snapshot.ts";
import { ApiError, canManage, clearToken, getToken, type Me, setToken, whoami } from "./api.ts";
import { AuditView } from "./audit.ts";
import { CallPage } from "./call.ts";
import { Checkpoints } from "./checkpoints.ts";
import { type FeedState, openFeed } from "./feed.ts";
import { NodePage } from "./node.ts";
import { Overview } from "./overview.ts";
import { Runs, RunView } from "./runs.ts";
import "./style.css";
import { nameMap } from "./ui.ts";

/**
 * The page's location: `#/`, `#/nodes/<id>`, `#/runs`, `#/runs/<id>`, `#/runs/<id>/calls/<callId>`,
 * `#/checkpoints`, `#/audit` (no server routes needed).
 */
type Where = { view: string; runId: string | null; id: string | null };
const route = (): Where => {
  const parts = location.hash
    .replace(/^#\/?/, "")
    .split("/")
    .map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
  if (parts[0] === "runs" && parts[1] && parts[2] === "calls" && parts[3])
    return { view: "call", runId: parts[1], id: parts[3] };
  if (parts[0] === "runs" && parts[1]) return { view: "run", runId: parts[1], id: null };
  if (parts[0] === "nodes" && parts[1]) return { view: "node", runId: null, id: parts[1] };
  for (const v of ["runs", "checkpoints", "audit"])
    if (parts[0] === v) return { view: v, runId: null, id: null };
  return { view: "overview", runId: null, id: null };
};

const Login = ({ onLogin, message }: { onLogin: (t: string, me: Me) => void; message: string }) => {
  const [token, setValue] = useState("");
  const [error, setError] = useState(message);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const me = await whoami(token.trim());
      onLogin(token.trim(), me);
    } catch (err) {
      setError(
        err instanceof ApiError && (err.status === 401 || err.status === 403)
          ? `Refused: ${err.message}. Use an admin, coordinator or reader token (fleetlink tokens create --role reader), or the hub's admin token.`
          : `The hub did not answer: ${(err as Error).message}`,
      );
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="login" onSubmit=${submit}>
    <h1>fleetlink</h1>
    <label>Token <input type="password" name="token" autocomplete="current-password" value=${token}
      onInput=${(e: Event) => setValue((e.target as HTMLInputElement).value)} autofocus /></label>
    <button type="submit" disabled=${busy || token.trim() === ""}>Log in</button>
    ${error ? html`<p class="error" data-testid="login-error">${error}</p>` : ""}
    <p class="muted">The token is kept in this tab only (sessionStorage) and sent as a bearer token.</p>
  </form>`;
};

const FeedBadge = ({ f }: { f: FeedState }) => {
  const text =
    f.state === "live"
      ? "live"
      : f.state === "connecting"
        ? "connecting…"
        : f.state === "retrying"
          ? `reconnecting in ${Math.round(f.inMs / 1000)} s (${f.reason})`
          : `refused: ${f.reason}`;
  return html`<span class=${`feed feed-${f.state}`} data-testid="feed-state" data-state=${f.state}>${text}</span>`;
};

/** Who is logged in: role, and tenant when the token is limited to one. */
const WhoAmI = ({ me }: { me: Me | null }) =>
  me
    ? html`<span class="whoami" data-testid="whoami" data-role=${me.role} data-tenant=${me.tenant ?? ""} title=${me.id}>
        ${me.label ?? (me.id === "admin-token" ? "admin token" : me.id.slice(-8))}: <strong>${me.role}</strong>
        ${me.tenant === null ? " (all tenants)" : html` @ <strong>${me.tenant}</strong>`}
      </span>`
    : "";

const App = () => {
  const [token, setTok] = useState(getToken());
  const [me, setMe] = useState<Me | null>(null);
  const [where, setWhere] = useState(route());
  const [snap, setSnap] = useState<Snapshot | null>(null);
  const [feed, setFeed] = useState<FeedState>({ state: "connecting" });
  const [message, setMessage] = useState("");

  useEffect(() => {
    const on = () => setWhere(route());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  // Who the kept token is (after a reload): the page enables only what its role may do.
  useEffect(() => {
    if (!token || me) return;
    whoami(token).then(setMe, (err: Error) => {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
        clearToken();
        setTok(null);
        setMessage(`The hub refused the token: ${err.message}`);
      }
    });
  }, [token, me]);
  // One feed at a time; it is reopened for the run being looked at (the hub adds that run's calls).
  useEffect(() => {
    if (!token) return;
    return openFeed(token, where.runId, {
      onSnapshot: setSnap,
      onState: (f) => {
        setFeed(f);
        if (f.state === "refused" && f.status !== 404) {
          clearToken();
          setTok(null);
          setMessage(`The hub refused the token: ${f.reason}`);
        }
      },
    });
  }, [token, where.runId]);

  const login = (t: string, who: Me) => {
    setToken(t);
    setMessage("");
    setMe(who);
    setTok(t);
  };
  if (!token) return html`<${Login} message=${message} onLogin=${login} />`;
  const logout = () => {
    clearToken();
    setSnap(null);
    setMe(null);
    setTok(null);
  };
  const tab = (view: string, href: string, label: string) =>
    html`<a href=${href} class=${where.view === view || (view === "runs" && (where.view === "run" || where.view === "call")) ? "active" : ""}>${label}</a>`;
  return html`
    <header>
      <strong>fleetlink</strong>
      <nav>${tab("overview", "#/", "Overview")} ${tab("runs", "#/runs", "Runs")} ${tab("checkpoints", "#/checkpoints", "Checkpoints")} ${canManage(me) ? tab("audit", "#/audit", "Audit") : ""}</nav>
      <${FeedBadge} f=${feed} />
      <${WhoAmI} me=${me} />
      <button class="link" onClick=${logout}>Log out</button>
    </header>
    <main>
      ${
        where.view === "audit"
          ? html`<${AuditView} me=${me} names=${nameMap(snap?.nodes ?? [])} />`
          : !snap
            ? html`<p class="empty">Waiting for the hub…</p>`
            : where.view === "call"
              ? html`<${CallPage} runId=${where.runId} callId=${where.id} s=${snap} me=${me} />`
              : where.view === "node"
                ? html`<${NodePage} id=${where.id} s=${snap} me=${me} />`
                : where.view === "run"
                  ? html`<${RunView} d=${snap.run?.run.id === where.runId ? snap.run : null} runId=${where.runId} now=${snap.at} me=${me} names=${nameMap(snap.nodes)} />`
                  : where.view === "runs"
                    ? html`<${Runs} s=${snap} />`
                    : where.view === "checkpoints"
                      ? html`<${Checkpoints} s=${snap} />`
                      : html`<${Overview} s=${snap} me=${me} />`
      }
    </main>`;
};

render(html`<${App} />`, document.getElementById("app")!);
