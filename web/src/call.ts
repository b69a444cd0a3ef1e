import { html } from "htm/preact";
import type { CallDetail, CallNodeDetail } from "../../src/hub/dashboard/details.ts";
import type { PayloadView } from "../../src/hub/dashboard/payload-view.ts";
import type { Snapshot } from "../../src/hub/dashboard/snapshot.ts";
import { Action } from "./actions.ts";
import { canDrive, getCall, type Me, NEEDS_DRIVE, withdraw } from "./api.ts";
import { usePoll } from "./poll.ts";
import { attempts, Badge, Code, Empty, ms, short, size, When } from "./ui.ts";

/** One call node by node: payload, result or error inline, attempts and latency (`#/runs/<run>/calls/<id>`). */
export const CallPage = ({
  runId,
  callId,
  s,
  me,
}: {
  runId: string;
  callId: string;
  s: Snapshot;
  me: Me | null;
}) => {
  const { data: c, error, reload } = usePoll(() => getCall(runId, callId), `${runId}/${callId}`, s.at);
  if (error && !c) return html`<p class="error" data-testid="call-error">${error}</p>`;
  if (!c) return html`<${Empty} text=${`Loading call ${callId}…`} />`;
  const open = c.nodes.filter((n) => n.state === "pending" || n.state === "leased");
  const doWithdraw = async () => {
    const done = await withdraw(
      runId,
      open.map((n) => n.instructionId),
    );
    reload();
    return `withdrew ${done.length} instruction${done.length === 1 ? "" : "s"}`;
  };
  return html`
    <p><a href=${`#/runs/${runId}`}>← run ${short(runId)}</a></p>
    <h2 data-testid="call-title">Call <span title=${c.id}>${short(c.id)}</span>: <strong>${c.method}</strong>
      <${Badge} kind=${c.open > 0 ? "running" : c.error > 0 ? "failed" : "done"} /></h2>
    <p data-testid="call-summary">pushed <${When} t=${c.createdAt} now=${s.at} /> · ${c.ok} ok, ${c.error} failed, ${c.open} open ·
      first reply ${ms(c.firstReplyMs)}, last reply ${ms(c.lastReplyMs)}</p>
    <p><${Action} id="withdraw" label="Withdraw" allowed=${canDrive(me) && open.length > 0} needs=${open.length === 0 && canDrive(me) ? "nothing left to withdraw" : NEEDS_DRIVE}
      confirm=${`Withdraw the ${open.length} unanswered instruction(s) of this call? Their nodes are told to stop; the caller gets CANCELLED.`}
      run=${doWithdraw} /></p>
    <table class="call-table" data-testid="call-nodes">
      <thead><tr><th>node</th><th>state</th><th>attempts</th><th>pushed → delivered → replied</th><th class="col-payload">payload</th><th class="col-payload">result / error</th></tr></thead>
      <tbody>${c.nodes.map((n) => html`<${NodeRow} key=${n.instructionId} n=${n} now=${s.at} />`)}</tbody>
    </table>
    ${c.truncated ? html`<p class="muted">Only the first 1000 nodes are shown.</p>` : ""}
    <p class="muted">Payloads are shown up to ${size(c.previewBytes)} each; blobs are named by hash and size, not read.
      Times after the push are from the push: first delivery, then the reply.</p>`;
};

const NodeRow = ({ n, now }: { n: CallNodeDetail; now: number }) =>
  html`<tr data-testid="call-node-row" data-node=${n.name ?? n.nodeId} data-state=${n.state}>
    <td><a href=${`#/nodes/${n.nodeId}`}><strong>${n.name ?? "(gone)"}</strong></a> <span class="muted" title=${n.nodeId}>${short(n.nodeId)}</span></td>
    <td><${Badge} kind=${n.state} /></td>
    <td data-testid="attempts" title=${`at most ${n.maxAttempts}`}>${attempts(n.attempts, n.maxAttempts, n.state)}</td>
    <td><${When} t=${n.pushedAt} now=${now} /><br />→ ${
      n.deliveredAt !== null
        ? html`<span data-testid="delivered" title="from the push to the first delivery">delivered +${ms(n.deliveredAt - n.pushedAt)}</span>`
        : html`<span class="muted">${n.repliedAt === null ? "not delivered yet" : "delivery not recorded"}</span>`
    }<br />→ ${
      n.repliedAt !== null
        ? html`replied +<span data-testid="latency" title="from the push to the reply">${ms(n.latencyMs)}</span>`
        : n.leaseUntil !== null
          ? html`<span class="muted">working, lease until <${When} t=${n.leaseUntil} now=${now} /></span>`
          : html`<span class="muted">waiting</span>`
    }</td>
    <td><${Payload} p=${n.payload} id="payload" /></td>
    <td>${
      n.error
        ? html`<div class="error" data-testid="error"><${Code} code=${n.error.code} id="error-code" />: <span data-testid="error-message">${n.error.message}</span></div>`
        : n.result
          ? html`<${Payload} p=${n.result} id="result" />`
          : html`<span class="muted">—</span>`
    }</td>
  </tr>`;

export const Payload = ({ p, id }: { p: PayloadView; id: string }) => {
  if (p.kind === "empty") return html`<span class="muted" data-testid=${id}>(empty)</span>`;
  return html`<div class="payload" data-testid=${id} data-kind=${p.kind} data-bytes=${p.bytes}>
    ${p.kind === "binary" ? html`<span class="muted">binary, ${size(p.bytes)}</span>` : html`<pre>${p.text}</pre>`}
    ${p.truncated ? html`<div class="muted" data-testid=${`${id}-truncated`}>shown in part: ${size(p.bytes)} in all</div>` : ""}
    ${p.blobs.map((b) => html`<div class="blob" data-testid="blob" title=${`sha256:${b.sha256}`}>blob ${b.sha256.slice(0, 12)}… ${size(b.size)}</div>`)}
  </div>`;
};

export type { CallDetail };
