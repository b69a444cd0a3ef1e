import { html } from "htm/preact";
import type { CheckpointView, Snapshot } from "../../src/hub/dashboard/snapshot.ts";
import { Badge, Empty, NodeName, nameMap, short, When } from "./ui.ts";

type Op = CheckpointView["push"];

export const Checkpoints = ({ s }: { s: Snapshot }) => {
  if (s.checkpoints === null)
    return html`<${Empty} text="This hub has no checkpoint store (serve --checkpoint-store file://DIR or s3://…)." />`;
  if (s.checkpoints.length === 0)
    return html`<${Empty} text="No run has host roles yet (fleetlink checkpoint assign)." />`;
  const names = nameMap(s.nodes);
  return s.checkpoints.map(
    (v) =>
      html`<h3><a href=${`#/runs/${v.runId}`}>Run ${short(v.runId)}</a></h3><${CheckpointCard} v=${v} names=${names} />`,
  );
};

/**
 * Host roles with their standbys, the last push and pull host by host, and standby takeovers; nodes by name
 * (`name (…last 8 hex)`, the id in the title).
 */
export const CheckpointCard = ({ v, names }: { v: CheckpointView; names: ReadonlyMap<string, string> }) => {
  const name = (id: string) => html`<${NodeName} id=${id} names=${names} />`;
  return html`<div class="card" data-testid="checkpoint">
    <div class="ops"><${OpLine} label="push" op=${v.push} /><${OpLine} label="pull" op=${v.pull} /></div>
    <table>
      <thead><tr><th>host</th><th>node</th><th>standby</th><th>push</th><th>pull</th></tr></thead>
      <tbody>
        ${v.roles.hosts.map((h) => {
          const p = v.push.hosts.find((x) => x.hostIdx === h.hostIdx);
          const q = v.pull.hosts.find((x) => x.hostIdx === h.hostIdx);
          return html`<tr>
            <td>${h.hostIdx}</td><td data-testid="checkpoint-host">${name(h.nodeId)}</td>
            <td>${h.standby.length ? h.standby.map((id, i) => html`${i > 0 ? ", " : ""}${name(id)}`) : "—"}</td>
            <td>${p ? html`<${Badge} kind=${p.status} />${p.error ? html` <span class="error">${p.error.message}</span>` : ""}` : "—"}</td>
            <td>${q ? html`<${Badge} kind=${q.status} />${q.error ? html` <span class="error">${q.error.message}</span>` : ""}` : "—"}</td>
          </tr>`;
        })}
      </tbody>
    </table>
    ${
      v.takeovers.length > 0
        ? html`<h4>Standby takeovers</h4><ul>${v.takeovers.map(
            (t) =>
              html`<li>host ${t.hostIdx}: ${name(t.from)} → ${t.to ? name(t.to) : "—"} <${Badge} kind=${t.status} /> (${t.attempts} attempts)${t.error ? html` <span class="error">${t.error.message}</span>` : ""}</li>`,
          )}</ul>`
        : ""
    }
  </div>`;
};

const OpLine = ({ label, op }: { label: string; op: Op }) => {
  const done = op.hosts.filter((h) => h.status !== "in_progress").length;
  return html`<div>
    <strong>${label}</strong> <${Badge} kind=${op.status} />
    ${op.id ? html` <span class="muted" title=${op.id}>${short(op.id)}</span>` : ""}
    ${op.hosts.length ? ` ${done}/${op.hosts.length} hosts` : ""}
    ${op.updatedAt ? html` <span class="muted"><${When} t=${op.updatedAt} now=${Date.now()} /></span>` : ""}
    ${op.error ? html` <span class="error">${op.error.message}</span>` : ""}
  </div>`;
};
