import { html } from "htm/preact";
import type { CallView, RunDetail, Snapshot } from "../../src/hub/dashboard/snapshot.ts";
import { CheckpointCard } from "./checkpoints.ts";
import { Badge, Empty, short, time } from "./ui.ts";

export const Runs = ({ s }: { s: Snapshot }) => {
  if (s.runs.length === 0)
    return html`<${Empty} text="No runs yet: a coordinator makes one with fleet.createRun()." />`;
  return html`
    <table data-testid="runs">
      <thead><tr><th>run</th><th>status</th><th>created</th><th>calls</th><th>ok</th><th>failed</th><th>open</th></tr></thead>
      <tbody>
        ${s.runs.map(
          (r) => html`<tr data-testid="run-row">
            <td title=${r.id}><a href=${`#/runs/${r.id}`}>${short(r.id)}</a></td>
            <td><${Badge} kind=${r.status} />${r.reason ? html` <span class="muted">${r.reason}</span>` : ""}</td>
            <td>${time(r.createdAt)}</td>
            <td>${r.calls}${r.truncated ? "+" : ""}</td>
            <td class="ok">${r.ok}</td><td class=${r.error ? "error" : ""}>${r.error}</td><td>${r.open}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    <p class="muted">The newest ${s.runs.length} runs; counts cover each run's newest instructions.</p>`;
};

export const RunView = ({ d, runId }: { d: RunDetail | null; runId: string }) => {
  if (!d) return html`<${Empty} text=${`Loading run ${runId}…`} />`;
  return html`
    <h2>Run <span title=${d.run.id}>${short(d.run.id)}</span> <${Badge} kind=${d.run.status} /></h2>
    ${d.run.reason ? html`<p class="muted">${d.run.reason}</p>` : ""}
    ${d.calls.length === 0 ? html`<${Empty} text="No calls in this run yet." />` : d.calls.map((c) => html`<${Call} key=${c.id} c=${c} />`)}
    ${d.truncated ? html`<p class="muted">Older calls are not shown.</p>` : ""}
    ${d.checkpoint ? html`<h2>Checkpoints</h2><${CheckpointCard} v=${d.checkpoint} />` : ""}`;
};

/** One call: the instructions sharing a groupId, each node's state as the replies arrive. */
const Call = ({ c }: { c: CallView }) => {
  const total = c.nodes.length;
  const state = c.open > 0 ? "running" : c.error > 0 ? "failed" : "done";
  return html`<div class="call" data-testid="call" data-state=${state}>
    <div class="call-head">
      <strong>${c.method}</strong> <span class="muted">${time(c.createdAt)}</span>
      <${Badge} kind=${state} /> <span data-testid="call-progress">${c.ok + c.error}/${total} replied</span>
      <div class="bar"><div class="bar-ok" style=${{ width: `${(100 * c.ok) / total}%` }}></div><div class="bar-error" style=${{ width: `${(100 * c.error) / total}%` }}></div></div>
    </div>
    <ul class="call-nodes">
      ${c.nodes.map(
        (n) => html`<li data-testid="call-node" data-state=${n.state} title=${n.message ?? ""}>
          <${Badge} kind=${n.state} text=${n.state === "error" ? (n.code ?? "error").replace("FLEETLINK_E_", "") : n.state === "ok" ? "replied ok" : n.state} />
          ${n.name ?? short(n.nodeId)}
        </li>`,
      )}
    </ul>
  </div>`;
};
