import { html } from "htm/preact";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { Snapshot } from "../../src/hub/dashboard/snapshot.ts";
import { ApiError, checkToken, clearToken, getToken, setToken } from "./api.ts";
import { Checkpoints } from "./checkpoints.ts";
import { type FeedState, openFeed } from "./feed.ts";
import { Overview } from "./overview.ts";
import { Runs, RunView } from "./runs.ts";
import "./style.css";

/** The page's location: `#/`, `#/runs`, `#/runs/<id>`, `#/checkpoints` (no server routes needed). */
const route = () => {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  if (parts[0] === "runs" && parts[1]) return { view: "run", runId: parts[1] } as const;
  if (parts[0] === "runs") return { view: "runs", runId: null } as const;
  if (parts[0] === "checkpoints") return { view: "checkpoints", runId: null } as const;
  return { view: "overview", runId: null } as const;
};

const Login = ({ onLogin, message }: { onLogin: (t: string) => void; message: string }) => {
  const [token, setValue] = useState("");
  const [error, setError] = useState(message);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      await checkToken(token.trim());
      onLogin(token.trim());
    } catch (err) {
      setError(
        err instanceof ApiError && (err.status === 401 || err.status === 403)
          ? `Refused: ${err.message}. Use the hub's admin token (serve --token-file).`
          : `The hub did not answer: ${(err as Error).message}`,
      );
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="login" onSubmit=${submit}>
    <h1>fleetlink</h1>
    <label>Admin token <input type="password" name="token" autocomplete="current-password" value=${token}
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

const App = () => {
  const [token, setTok] = useState(getToken());
  const [where, setWhere] = useState(route());
  const [snap, setSnap] = useState<Snapshot | null>(null);
  const [feed, setFeed] = useState<FeedState>({ state: "connecting" });
  const [message, setMessage] = useState("");

  useEffect(() => {
    const on = () => setWhere(route());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
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

  const login = (t: string) => {
    setToken(t);
    setMessage("");
    setTok(t);
  };
  if (!token) return html`<${Login} message=${message} onLogin=${login} />`;
  const logout = () => {
    clearToken();
    setSnap(null);
    setTok(null);
  };
  const tab = (view: string, href: string, label: string) =>
    html`<a href=${href} class=${where.view === view || (view === "runs" && where.view === "run") ? "active" : ""}>${label}</a>`;
  return html`
    <header>
      <strong>fleetlink</strong>
      <nav>${tab("overview", "#/", "Overview")} ${tab("runs", "#/runs", "Runs")} ${tab("checkpoints", "#/checkpoints", "Checkpoints")}</nav>
      <${FeedBadge} f=${feed} />
      <button class="link" onClick=${logout}>Log out</button>
    </header>
    <main>
      ${
        !snap
          ? html`<p class="empty">Waiting for the hub…</p>`
          : where.view === "run"
            ? html`<${RunView} d=${snap.run?.run.id === where.runId ? snap.run : null} runId=${where.runId} />`
            : where.view === "runs"
              ? html`<${Runs} s=${snap} />`
              : where.view === "checkpoints"
                ? html`<${Checkpoints} s=${snap} />`
                : html`<${Overview} s=${snap} />`
      }
    </main>`;
};

render(html`<${App} />`, document.getElementById("app")!);
