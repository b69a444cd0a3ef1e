import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { type AuditEntry, canManage, listAudit, listTokens, type Me, NEEDS_ADMIN } from "./api.ts";
import { Badge, Empty, NodeName, short, When } from "./ui.ts";

/**
 * Who an entry names, as people read it: a stored token by its label (from the token listing; a token deleted by
 * cleanup, or one without a label, by its id's end), a node by its name, the hub's own tokens as they are.
 */
const Who = ({
  principal,
  labels,
  names,
}: {
  principal: string;
  labels: ReadonlyMap<string, string>;
  names: ReadonlyMap<string, string>;
}) => {
  const label = labels.get(principal);
  if (label) return html`<span title=${principal} data-testid="audit-who">${label}</span>`;
  if (principal.startsWith("node:")) return html`<${NodeName} id=${principal.slice(5)} names=${names} />`;
  return html`<span title=${principal} data-testid="audit-who">${principal.length > 20 ? short(principal) : principal}</span>`;
};

/** The audit log, newest first, 100 entries a page (admins only: the hub answers 403 to anyone else). */
export const AuditView = ({ me, names }: { me: Me | null; names: ReadonlyMap<string, string> }) => {
  const [entries, setEntries] = useState<AuditEntry[]>([]);
  const [labels, setLabels] = useState<ReadonlyMap<string, string>>(new Map());
  const [next, setNext] = useState<number | null>(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const load = async (before: number | null) => {
    setBusy(true);
    try {
      // The log keeps a token's id; its label comes from the token listing (read with each first page).
      if (before === null)
        void listTokens().then(
          (ts) => setLabels(new Map(ts.flatMap((t) => (t.label ? [[t.id, t.label] as const] : [])))),
          () => {},
        );
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
                <td><${Who} principal=${e.principal} labels=${labels} names=${names} /></td>
                <td>${e.role}</td><td>${e.tenant ?? "—"}</td><td>${e.address ?? "—"}</td>
                <td title=${e.detail ? JSON.stringify(e.detail) : ""}>${e.action}</td>
                <td title=${e.target ?? ""}>${e.target ? (e.action.startsWith("node.") ? html`<${NodeName} id=${e.target} names=${names} />` : short(e.target)) : "—"}</td>
                <td><${Badge} kind=${e.outcome === "ok" ? "ok" : "error"} text=${e.outcome} /></td>
              </tr>`,
            )}
          </tbody>
        </table>`
    }
    ${next !== null ? html`<button onClick=${() => load(next)} disabled=${busy}>Older entries</button>` : ""}`;
};
