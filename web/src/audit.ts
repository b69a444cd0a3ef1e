import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { type AuditEntry, canManage, listAudit, type Me, NEEDS_ADMIN } from "./api.ts";
import { Badge, Empty, short, When } from "./ui.ts";

/** The audit log, newest first, 100 entries a page (admins only: the hub answers 403 to anyone else). */
export const AuditView = ({ me }: { me: Me | null }) => {
  const [entries, setEntries] = useState<AuditEntry[]>([]);
  const [next, setNext] = useState<number | null>(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const load = async (before: number | null) => {
    setBusy(true);
    try {
      const page = await listAudit(before);
      setEntries((old) => (before === null ? page.entries : [...old, ...page.entries]));
      setNext(page.next);
      setError("");
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => {
    if (canManage(me)) void load(null);
  }, [me?.id]);
  if (!canManage(me)) return html`<${Empty} text=${`The audit log ${NEEDS_ADMIN}.`} />`;
  return html`
    <h2>Audit log <button onClick=${() => load(null)} disabled=${busy}>Refresh</button></h2>
    ${error ? html`<p class="error" data-testid="audit-error">${error}</p>` : ""}
    ${
      entries.length === 0 && !busy
        ? html`<${Empty} text="Nothing recorded yet." />`
        : html`<table data-testid="audit">
          <thead><tr><th>time</th><th>who</th><th>role</th><th>tenant</th><th>address</th><th>action</th><th>target</th><th>outcome</th></tr></thead>
          <tbody>
            ${entries.map(
              (
                e,
              ) => html`<tr key=${e.seq} data-testid="audit-row" data-action=${e.action} data-outcome=${e.outcome}>
                <td><${When} t=${e.at} now=${Date.now()} /></td>
                <td title=${e.principal}>${e.principal.length > 20 ? short(e.principal) : e.principal}</td>
                <td>${e.role}</td><td>${e.tenant ?? "—"}</td><td>${e.address ?? "—"}</td>
                <td title=${e.detail ? JSON.stringify(e.detail) : ""}>${e.action}</td>
                <td title=${e.target ?? ""}>${e.target ? short(e.target) : "—"}</td>
                <td><${Badge} kind=${e.outcome === "ok" ? "ok" : "error"} text=${e.outcome} /></td>
              </tr>`,
            )}
          </tbody>
        </table>`
    }
    ${next !== null ? html`<button onClick=${() => load(next)} disabled=${busy}>Older entries</button>` : ""}`;
};
