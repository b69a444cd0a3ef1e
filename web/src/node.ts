import { html } from "htm/preact";
import { useState } from "preact/hooks";
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
import { Badge, Empty, ms, short, When } from "./ui.ts";

/** One node (`#/nodes/<id>`): where it is connected, its heartbeat, and its recent instructions, filtered. */
export const NodePage = ({ id, s, me }: { id: string; s: Snapshot; me: Me | null }) => {
  const n = s.nodes.find((x) => x.id === id);
  const [f, setF] = useState<NodeFilter>({});
  const key = `${id}?${f.method ?? ""}&${f.run ?? ""}&${f.outcome ?? ""}`;
  const { data, error } = usePoll(() => nodeInstructions(id, f), key, s.at);
  if (!n)
    return html`<${Empty} text=${`No node ${id} (unknown, of another tenant, or removed by cleanup).`} />`;
  const manage = canManage(me);
  const set = (k: keyof NodeFilter) => (e: Event) =>
    setF({ ...f, [k]: (e.target as HTMLInputElement).value.trim() || undefined });
  return html`
    <h2 data-testid="node-title">Node <strong>${n.name}</strong> <span class="muted">${n.id}</span> <${Badge} kind=${n.status} /></h2>
    <table class="facts" data-testid="node-facts">
      <tr><th>tenant</th><td>${n.tenant}</td><th>version</th><td data-testid="node-version">${n.version ?? "—"}${n.protocol === null ? "" : html` <span class="muted">protocol ${n.protocol}</span>`}</td></tr>
      <tr><th>replica holding its stream</th><td data-testid="node-replica" title=${n.replica ?? ""}>${n.replica ? short(n.replica) : "—"}${n.replica === s.replica ? " (this page's)" : ""}</td>
        <th>in flight</th><td data-testid="node-inflight">${n.inflight ?? "—"}</td></tr>
      <tr><th>last heartbeat</th><td data-testid="node-heartbeat"><${When} t=${n.lastHeartbeat} now=${s.at} /></td>
        <th>online until</th><td><${When} t=${n.onlineUntil} now=${s.at} /></td></tr>
      <tr><th>registered</th><td><${When} t=${n.createdAt} now=${s.at} /></td><th>heartbeat interval</th><td>${ms(n.heartbeatIntervalMs)}</td></tr>
    </table>
    <p>
      ${n.status === "pending" ? html`<${Action} id="approve" label="Approve" allowed=${manage} needs=${NEEDS_ADMIN} run=${() => approveNode(n.id).then(() => "approved")} />` : ""}
      ${
        n.status !== "unregistered"
          ? html`<${Action} id="unregister" label="Unregister" allowed=${manage} needs=${NEEDS_ADMIN}
              confirm=${`Unregister ${n.name}? Its stream is closed and its credential stops working; it must enroll again.`}
              run=${() => unregisterNode(n.id).then(() => "unregistered")} />`
          : ""
      }
    </p>
    <h2>Recent instructions</h2>
    <form class="filters" data-testid="node-filters" onSubmit=${(e: Event) => e.preventDefault()}>
      <input name="method" placeholder="method" onChange=${set("method")} />
      <input name="run" placeholder="run id" onChange=${set("run")} />
      <select name="outcome" onChange=${set("outcome")}>
        <option value="">any outcome</option><option value="ok">ok</option><option value="error">error</option><option value="pending">pending</option>
      </select>
    </form>
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
              <td>${i.attempts}/${i.maxAttempts}</td>
              <td><${Badge} kind=${i.state} />${i.error ? html` <span class="error">${i.error.code}: ${i.error.message}</span>` : ""}</td>
              <td>${ms(i.latencyMs)}</td>
            </tr>`,
          )}</tbody></table>
          <p class="muted">The newest 50 instructions to this node that match, across runs, among the store's newest 50,000 (read from the store: any replica shows the same).</p>`
    }`;
};
