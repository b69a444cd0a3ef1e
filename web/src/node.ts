import { html } from "htm/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import type { Snapshot } from "../../src/hub/dashboard/snapshot.ts";
import { Action } from "./actions.ts";
import {
  approveNode,
  canManage,
  type Me,
  NEEDS_ADMIN,
  type NodeFilter,
  nodeInstructions,
  unregisterNode,
} from "./api.ts";
import { usePoll } from "./poll.ts";
import { attempts, Badge, Code, Empty, ms, short, When } from "./ui.ts";

/** How long typing in a text filter waits before the hub is asked, in ms. */
const TYPING_MS = 300;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The filter the form's fields say now: every field, whichever changed. The run id is asked of the hub only once
 * it is a whole id (the hub matches runs exactly); a partial one is named in `partialRun`.
 */
const readFilter = (form: HTMLFormElement): { f: NodeFilter; partialRun: boolean } => {
  const v = (name: string) =>
    (form.elements.namedItem(name) as HTMLInputElement | null)?.value.trim() || undefined;
  const run = v("run");
  const whole = run !== undefined && UUID.test(run);
  return {
    f: { method: v("method"), run: whole ? run : undefined, outcome: v("outcome") as NodeFilter["outcome"] },
    partialRun: run !== undefined && !whole,
  };
};

/** One node (`#/nodes/<id>`): where it is connected, its heartbeat, and its recent instructions, filtered. */
export const NodePage = ({ id, s, me }: { id: string; s: Snapshot; me: Me | null }) => {
  const n = s.nodes.find((x) => x.id === id);
  const [f, setF] = useState<NodeFilter>({});
  const [partialRun, setPartialRun] = useState(false);
  // The node's status as the last action here answered it, until the feed says so too (an unregistration raises
  // no store event: the feed would show it only at its next 2 s refresh).
  const [unregistered, setUnregistered] = useState<string | null>(null);
  const typing = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(typing.current), []);
  const key = `${id}?${f.method ?? ""}&${f.run ?? ""}&${f.outcome ?? ""}`;
  const { data, error } = usePoll(() => nodeInstructions(id, f), key, s.at);
  if (!n)
    return html`<${Empty} text=${`No node ${id} (unknown, of another tenant, or removed by cleanup).`} />`;
  const manage = canManage(me);
  // Text applies as you type (after a pause), the outcome at once; each reads every field's current value.
  const apply = (form: HTMLFormElement, now: boolean) => {
    clearTimeout(typing.current);
    const go = () => {
      const next = readFilter(form);
      setF(next.f);
      setPartialRun(next.partialRun);
    };
    if (now) go();
    else typing.current = setTimeout(go, TYPING_MS);
  };
  const onField = (e: Event) => {
    const el = e.target as HTMLElement;
    apply((el as HTMLInputElement).form!, el.tagName === "SELECT");
  };
  const status = unregistered === n.id ? "unregistered" : n.status;
  return html`
    <h2 data-testid="node-title">Node <strong>${n.name}</strong> <span class="muted">${n.id}</span> <${Badge} kind=${status} /></h2>
    <table class="facts" data-testid="node-facts">
      <tr><th>tenant</th><td>${n.tenant}</td><th>version</th><td data-testid="node-version">${n.version ?? "—"}${n.protocol === null ? "" : html` <span class="muted">protocol ${n.protocol}</span>`}</td></tr>
      <tr><th>replica holding its stream</th><td data-testid="node-replica" title=${n.replica ?? ""}>${n.replica ? short(n.replica) : "—"}${n.replica === s.replica ? " (this page's)" : ""}</td>
        <th>in flight</th><td data-testid="node-inflight">${n.inflight ?? "—"}</td></tr>
      <tr><th>last heartbeat</th><td data-testid="node-heartbeat"><${When} t=${n.lastHeartbeat} now=${s.at} /></td>
        <th>online until</th><td data-testid="node-online-until">${status === "unregistered" ? html`<span class="muted">— (unregistered)</span>` : html`<${When} t=${n.onlineUntil} now=${s.at} />`}</td></tr>
      <tr><th>registered</th><td><${When} t=${n.createdAt} now=${s.at} /></td><th>heartbeat interval</th><td>${ms(n.heartbeatIntervalMs)}</td></tr>
    </table>
    <p>
      ${
        status === "pending"
          ? html`<${Action} id="approve" label="Approve" allowed=${manage} needs=${NEEDS_ADMIN} run=${() => approveNode(n.id).then(() => "approved")} />`
          : ""
      }
      ${
        status !== "unregistered"
          ? html`<${Action} id="unregister" label="Unregister" allowed=${manage} needs=${NEEDS_ADMIN}
              confirm=${`Unregister ${n.name}? Its stream is closed and its credential stops working; it must enroll again.`}
              run=${() =>
                unregisterNode(n.id).then(() => {
                  setUnregistered(n.id);
                  return "unregistered";
                })} />`
          : html`<span class="muted" data-testid="unregistered-note">Unregistered: its credential no longer works; it must enroll again.</span>`
      }
    </p>
    <h2>Recent instructions</h2>
    <form class="filters" data-testid="node-filters" onInput=${onField} onChange=${onField}
      onSubmit=${(e: Event) => {
        e.preventDefault();
        apply(e.currentTarget as HTMLFormElement, true);
      }}>
      <input name="method" placeholder="method (exact)" title="Only this method (the whole name)" />
      <input name="run" placeholder="run id" title="Only this run (the whole id)" />
      <select name="outcome">
        <option value="">any outcome</option><option value="ok">ok</option><option value="error">error</option><option value="pending">pending</option>
      </select>
    </form>
    ${partialRun ? html`<p class="muted" data-testid="node-partial-run">The run filter applies once the whole run id is entered.</p>` : ""}
    ${error ? html`<p class="error" data-testid="node-error">${error}</p>` : ""}
    ${
      !data
        ? html`<${Empty} text="Loading…" />`
        : data.length === 0
          ? html`<${Empty} text="No instructions match." />`
          : html`<table data-testid="node-instructions">
          <thead><tr><th>method</th><th>run</th><th>pushed</th><th>attempts</th><th>outcome</th><th>latency</th></tr></thead>
          <tbody>${data.map(
            (i) => html`<tr data-testid="node-instruction" data-method=${i.method} data-state=${i.state}>
              <td><a href=${`#/runs/${i.runId}/calls/${i.callId}`}>${i.method}</a></td>
              <td title=${i.runId}><a href=${`#/runs/${i.runId}`}>${short(i.runId)}</a></td>
              <td><${When} t=${i.createdAt} now=${s.at} /></td>
              <td data-testid="attempts">${attempts(i.attempts, i.maxAttempts, i.state)}</td>
              <td><${Badge} kind=${i.state} />${i.error ? html` <span class="error"><${Code} code=${i.error.code} id="error-code" />: ${i.error.message}</span>` : ""}</td>
              <td>${ms(i.latencyMs)}</td>
            </tr>`,
          )}</tbody></table>
          <p class="muted">The newest 50 instructions to this node that match, across runs, among the store's newest 50,000 (read from the store: any replica shows the same).</p>`
    }`;
};
