import { html } from "htm/preact";
import { useState } from "preact/hooks";
import type { NodeView, Snapshot } from "../../src/hub/dashboard/snapshot.ts";
import { approveNode, canManage, type Me, NEEDS_ADMIN } from "./api.ts";
import { ago, Badge, Empty, Stat, short } from "./ui.ts";

export const Overview = ({ s, me }: { s: Snapshot; me: Me | null }) => {
  const f = s.fleet;
  return html`
    <section class="stats">
      <${Stat} id="online" label="nodes online" value=${f.online} />
      <${Stat} id="offline" label="offline" value=${f.offline} />
      <${Stat} id="pending" label="pending approval" value=${f.pending} />
      <${Stat} id="replicas" label="replicas seen" value=${f.replicas} />
      <${Stat} id="inflight" label="in flight" value=${f.inflight} />
      <${Stat} id="rate" label="replies / s" value=${f.replyRate.toFixed(1)} />
      <${Stat} id="runs" label="runs running" value=${f.runs.running} />
    </section>
    <h2>Nodes</h2>
    <${Nodes} s=${s} me=${me} />
    <h2>Replicas</h2>
    <table>
      <thead><tr><th>replica</th><th>nodes connected</th><th>in flight</th><th>reply streams</th><th>seen</th></tr></thead>
      <tbody>
        ${s.replicas.map(
          (r) => html`<tr>
            <td title=${r.id}>${short(r.id)}${r.id === s.replica ? html` <${Badge} kind="self" text="this page's" />` : ""}</td>
            <td>${r.nodes.length}</td><td>${r.inflight ?? "—"}</td><td>${r.runStreams ?? "—"}</td><td>${ago(r.updatedAt, Date.now())}</td>
          </tr>`,
        )}
      </tbody>
    </table>`;
};

const Nodes = ({ s, me }: { s: Snapshot; me: Me | null }) => {
  const live = s.nodes.filter((n) => n.status !== "unregistered");
  if (live.length === 0) return html`<${Empty} text="No nodes yet: start one with fleetlink node --hub …" />`;
  return html`
    <table data-testid="nodes">
      <thead><tr><th>name</th>${s.tenant === null ? html`<th>tenant</th>` : ""}<th>status</th><th>replica</th><th>last heartbeat</th><th>online until</th><th>in flight</th><th>version</th><th></th></tr></thead>
      <tbody>${live.map((n) => html`<${NodeRow} key=${n.id} n=${n} now=${s.at} manage=${canManage(me)} tenants=${s.tenant === null} />`)}</tbody>
    </table>`;
};

const NodeRow = ({
  n,
  now,
  manage,
  tenants,
}: {
  n: NodeView;
  now: number;
  manage: boolean;
  tenants: boolean;
}) => {
  const [err, setErr] = useState("");
  const approve = () =>
    approveNode(n.id).then(
      () => setErr(""),
      (e: Error) => setErr(e.message),
    );
  return html`<tr data-testid="node-row" data-name=${n.name} data-status=${n.status}>
    <td title=${n.id}><strong>${n.name}</strong> <span class="muted">${short(n.id)}</span></td>
    ${tenants ? html`<td data-testid="node-tenant">${n.tenant}</td>` : ""}
    <td><${Badge} kind=${n.status} /></td>
    <td title=${n.replica ?? ""}>${n.replica ? short(n.replica) : "—"}</td>
    <td>${ago(n.lastHeartbeat, now)}</td>
    <td>${ago(n.onlineUntil, now)}</td>
    <td>${n.inflight ?? "—"}</td>
    <td title=${n.protocol === null ? "" : `node protocol ${n.protocol}`}>${n.version ?? "—"}</td>
    <td>${
      n.status === "pending"
        ? // A role that may not approve sees the button disabled, saying why; the hub refuses it anyway (403).
          html`<button data-testid="approve" onClick=${approve} disabled=${!manage} title=${manage ? "Let this node in" : NEEDS_ADMIN}>Approve</button>`
        : ""
    }${err ? html` <span class="error">${err}</span>` : ""}</td>
  </tr>`;
};
