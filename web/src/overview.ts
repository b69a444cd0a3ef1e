import { html } from "htm/preact";
import { useState } from "preact/hooks";
import type { NodeView, Snapshot } from "../../src/hub/dashboard/snapshot.ts";
import { approveNode, canManage, type Me, NEEDS_ADMIN, recentFailures } from "./api.ts";
import { usePoll } from "./poll.ts";
import { RateCharts } from "./rates.ts";
import { Badge, Code, Empty, NodeName, nameMap, Stat, short, When } from "./ui.ts";

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
    <h2>Recent failures</h2>
    <${Failures} s=${s} />
    <h2>Rates, last hour</h2>
    <${RateCharts} />
    <h2>Nodes</h2>
    <${Nodes} s=${s} me=${me} />
    <h2>Replicas</h2>
    <p class="muted">A replica is named by its id (a new one at each start) and the address it listens on.</p>
    <table>
      <thead><tr><th>replica</th><th>address</th><th>nodes connected</th><th>in flight</th><th>reply streams</th><th>seen</th></tr></thead>
      <tbody>
        ${s.replicas.map(
          (r) => html`<tr>
            <td title=${r.id}>${short(r.id)}${r.id === s.replica ? html` <${Badge} kind="self" text="this page's" />` : ""}</td>
            <td class="replica-address">${r.address ?? "—"}</td><td>${r.nodes.length}</td><td>${r.inflight ?? "—"}</td><td>${r.runStreams ?? "—"}</td><td><${When} t=${r.updatedAt} now=${Date.now()} /></td>
          </tr>`,
        )}
      </tbody>
    </table>`;
};

const Nodes = ({ s, me }: { s: Snapshot; me: Me | null }) => {
  const [q, setQ] = useState("");
  const [status, setStatus] = useState("");
  const live = s.nodes.filter((n) => n.status !== "unregistered");
  if (live.length === 0) return html`<${Empty} text="No nodes yet: start one with fleetlink node --hub …" />`;
  const shown = live.filter(
    (n) => (!q || n.name.includes(q) || n.id.includes(q)) && (!status || n.status === status),
  );
  return html`
    <form class="filters" data-testid="node-list-filters" onSubmit=${(e: Event) => e.preventDefault()}>
      <input name="node" placeholder="node name or id" onInput=${(e: Event) => setQ((e.target as HTMLInputElement).value.trim())} />
      <select name="status" onChange=${(e: Event) => setStatus((e.target as HTMLSelectElement).value)}>
        <option value="">any status</option><option value="online">online</option><option value="offline">offline</option><option value="pending">pending</option>
      </select>
    </form>
    <table data-testid="nodes">
      <thead><tr><th>name</th>${s.tenant === null ? html`<th>tenant</th>` : ""}<th>status</th><th>replica</th><th>last heartbeat</th><th>online until</th><th>in flight</th><th>version</th><th></th></tr></thead>
      <tbody>${shown.map((n) => html`<${NodeRow} key=${n.id} n=${n} now=${s.at} manage=${canManage(me)} tenants=${s.tenant === null} />`)}</tbody>
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
    <td title=${n.id}><a href=${`#/nodes/${n.id}`}><strong>${n.name}</strong></a> <span class="muted">${short(n.id)}</span></td>
    ${tenants ? html`<td data-testid="node-tenant">${n.tenant}</td>` : ""}
    <td><${Badge} kind=${n.status} /></td>
    <td title=${n.replica ?? ""}>${n.replica ? short(n.replica) : "—"}</td>
    <td><${When} t=${n.lastHeartbeat} now=${now} /></td>
    <td><${When} t=${n.onlineUntil} now=${now} /></td>
    <td data-testid="node-inflight">${n.inflight ?? "—"}</td>
    <td data-testid="node-version" title=${n.protocol === null ? "" : `node protocol ${n.protocol}`}>${n.version ?? "—"}</td>
    <td>${
      n.status === "pending"
        ? // A role that may not approve sees the button disabled, saying why; the hub refuses it anyway (403).
          html`<button data-testid="approve" onClick=${approve} disabled=${!manage} title=${manage ? "Let this node in" : NEEDS_ADMIN}>Approve</button>`
        : ""
    }${err ? html` <span class="error">${err}</span>` : ""}</td>
  </tr>`;
};

/**
 * The newest error replies fleet-wide (of the token's tenant): what failed, where, and a link to the call. Read
 * from the store (GET /v1/failures) when the page opens and every 5 s, not on every snapshot: each read is a
 * bounded scan (up to 50,000 replies) per viewer, not worth once a second.
 */
const Failures = ({ s }: { s: Snapshot }) => {
  const { data, error } = usePoll(() => recentFailures(10), "failures", null, 5000);
  if (error) return html`<p class="error" data-testid="failures-error">${error}</p>`;
  if (!data) return html`<${Empty} text="Loading…" />`;
  if (data.length === 0) return html`<${Empty} text="No error replies among the newest 50,000 replies." />`;
  const names = nameMap(s.nodes);
  return html`<table data-testid="failures">
      <thead><tr><th>when</th><th>node</th><th>method</th><th>code</th><th>message</th><th>run</th></tr></thead>
      <tbody>${data.map(
        (x) => html`<tr key=${x.replyId} data-testid="failure" data-method=${x.method}>
          <td><${When} t=${x.at} now=${s.at} /></td>
          <td><a href=${`#/nodes/${x.nodeId}`}><${NodeName} id=${x.nodeId} names=${names} /></a></td>
          <td><a href=${`#/runs/${x.runId}/calls/${x.callId}`} data-testid="failure-call">${x.method}</a></td>
          <td class="error"><${Code} code=${x.code} id="failure-code" /></td>
          <td class="error failure-message">${x.message.length > 160 ? `${x.message.slice(0, 160)}…` : x.message}</td>
          <td title=${x.runId}><a href=${`#/runs/${x.runId}`}>${short(x.runId)}</a></td>
        </tr>`,
      )}</tbody></table>
    <p class="muted">The newest 10 error replies among the store's newest 50,000 replies; the method links to the call.</p>`;
};
