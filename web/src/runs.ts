import { html } from "htm/preact";
import { useState } from "preact/hooks";
import type { CallView, RunDetail, RunSummary, Snapshot } from "../../src/hub/dashboard/snapshot.ts";
import type { Run } from "../../src/protocol/types.ts";
import { Action } from "./actions.ts";
import { canDrive, finishRun, listRuns, type Me, NEEDS_DRIVE } from "./api.ts";
import { CheckpointCard } from "./checkpoints.ts";
import { usePoll } from "./poll.ts";
import { Badge, Empty, ms, short, shortCode, When } from "./ui.ts";

const value = (e: Event) => (e.target as HTMLInputElement).value.trim();

/**
 * The newest runs with their calls' outcomes (from the feed); with a filter, the hub's list of up to 100 runs of
 * that status (GET /v1/runs), so older runs are found too; outcome counts only for runs the feed covers.
 */
export const Runs = ({ s }: { s: Snapshot }) => {
  const [q, setQ] = useState("");
  const [status, setStatus] = useState("");
  const filtered = q !== "" || status !== "";
  const listed = usePoll(
    () => (filtered ? listRuns(status) : Promise.resolve(null)),
    `runs?${status}`,
    s.at,
    10_000,
  );
  if (s.runs.length === 0)
    return html`<${Empty} text="No runs yet: a coordinator makes one with fleet.createRun()." />`;
  const summaries = new Map(s.runs.map((r) => [r.id, r]));
  const base: (Run & Partial<RunSummary>)[] = filtered ? (listed.data ?? []) : s.runs;
  const shown = base
    .filter((r) => (!q || r.id.includes(q)) && (!status || r.status === status))
    .map((r) => ({ ...r, ...summaries.get(r.id) }));
  const count = (v: number | undefined) => (v === undefined ? "—" : v);
  return html`
    <form class="filters" data-testid="run-filters" onSubmit=${(e: Event) => e.preventDefault()}>
      <input name="run" placeholder="run id" onInput=${(e: Event) => setQ(value(e))} />
      <select name="status" onChange=${(e: Event) => setStatus(value(e))}>
        <option value="">any status</option><option value="pending">pending</option><option value="running">running</option><option value="finished">finished</option>
      </select>
    </form>
    <table data-testid="runs">
      <thead><tr><th>run</th><th>status</th><th>created</th><th>calls</th><th>ok</th><th>failed</th><th>open</th></tr></thead>
      <tbody>
        ${shown.map(
          (r) => html`<tr data-testid="run-row" data-status=${r.status}>
            <td title=${r.id}><a href=${`#/runs/${r.id}`}>${short(r.id)}</a></td>
            <td><${Badge} kind=${r.status} />${r.reason ? html` <span class="muted">${r.reason}</span>` : ""}</td>
            <td><${When} t=${r.createdAt} now=${s.at} /></td>
            <td>${count(r.calls)}${r.truncated ? "+" : ""}</td>
            <td class="ok">${count(r.ok)}</td><td class=${r.error ? "error" : ""}>${count(r.error)}</td><td>${count(r.open)}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    <p class="muted">${
      filtered
        ? `Runs filtered by the hub (the newest 100${status ? ` ${status}` : ""}), ${shown.length} shown; outcome counts for the newest ${s.runs.length} runs.`
        : `The newest ${s.runs.length} runs; counts cover each run's newest instructions.`
    }</p>`;
};

type Outcome = "" | "ok" | "error" | "pending";

export const RunView = ({
  d,
  runId,
  now,
  me,
  names,
}: {
  d: RunDetail | null;
  runId: string;
  now: number;
  me: Me | null;
  /** Node id → name (the feed's nodes), for the checkpoint card. */
  names: ReadonlyMap<string, string>;
}) => {
  const [method, setMethod] = useState("");
  const [node, setNode] = useState("");
  const [outcome, setOutcome] = useState<Outcome>("");
  if (!d) return html`<${Empty} text=${`Loading run ${runId}…`} />`;
  const r = d.run;
  const calls = d.calls.filter(
    (c) =>
      (!method || c.method.includes(method)) &&
      (!node || c.nodes.some((n) => (n.name ?? n.nodeId).includes(node))) &&
      (!outcome ||
        (outcome === "pending"
          ? c.open > 0
          : outcome === "error"
            ? c.error > 0
            : c.open === 0 && c.error === 0)),
  );
  return html`
    <h2>Run <span title=${r.id}>${short(r.id)}</span> <${Badge} kind=${r.status} /></h2>
    <p class="muted">created <${When} t=${r.createdAt} now=${now} />, updated <${When} t=${r.updatedAt} now=${now} />${r.reason ? ` · ${r.reason}` : ""}</p>
    ${
      r.status !== "finished"
        ? html`<p><${Action} id="finish-run" label="Finish run" allowed=${canDrive(me)} needs=${NEEDS_DRIVE}
            confirm="Finish this run? It takes no more pushes; calls in flight still get their replies."
            run=${() => finishRun(r.id, r.status).then(() => "finished")} /></p>`
        : ""
    }
    <form class="filters" data-testid="call-filters" onSubmit=${(e: Event) => e.preventDefault()}>
      <input name="method" placeholder="method" onInput=${(e: Event) => setMethod(value(e))} />
      <input name="node" placeholder="node name" onInput=${(e: Event) => setNode(value(e))} />
      <select name="outcome" onChange=${(e: Event) => setOutcome(value(e) as Outcome)}>
        <option value="">any outcome</option><option value="ok">ok</option><option value="error">error</option><option value="pending">pending</option>
      </select>
    </form>
    ${
      d.calls.length === 0
        ? html`<${Empty} text="No calls in this run yet." />`
        : calls.length === 0
          ? html`<${Empty} text="No calls match." />`
          : calls.map((c) => html`<${Call} key=${c.id} c=${c} runId=${r.id} now=${now} />`)
    }
    ${d.truncated ? html`<p class="muted">Older calls are not shown.</p>` : ""}
    ${d.checkpoint ? html`<h2>Checkpoints</h2><${CheckpointCard} v=${d.checkpoint} names=${names} />` : ""}`;
};

/** One call: the instructions sharing a groupId, each node's state as the replies arrive. */
const Call = ({ c, runId, now }: { c: CallView; runId: string; now: number }) => {
  const total = c.nodes.length;
  const state = c.open > 0 ? "running" : c.error > 0 ? "failed" : "done";
  return html`<div class="call" data-testid="call" data-state=${state}>
    <div class="call-head">
      <a href=${`#/runs/${runId}/calls/${c.id}`} data-testid="call-link"><strong>${c.method}</strong></a> <span class="muted"><${When} t=${c.createdAt} now=${now} /></span>
      <${Badge} kind=${state} /> <span data-testid="call-progress">${c.ok + c.error}/${total} replied</span>
      <span class="muted" data-testid="call-latency">first ${ms(c.firstReplyMs)} · last ${ms(c.lastReplyMs)}</span>
      <div class="bar"><div class="bar-ok" style=${{ width: `${(100 * c.ok) / total}%` }}></div><div class="bar-error" style=${{ width: `${(100 * c.error) / total}%` }}></div></div>
    </div>
    <ul class="call-nodes">
      ${c.nodes.map(
        (n) => html`<li data-testid="call-node" data-state=${n.state} title=${n.message ?? ""}>
          <span title=${n.code ?? ""}><${Badge} kind=${n.state} text=${n.state === "error" ? shortCode(n.code ?? "error") : n.state === "ok" ? "replied ok" : n.state} /></span>
          <a href=${`#/nodes/${n.nodeId}`}>${n.name ?? short(n.nodeId)}</a>
          ${n.message ? html` <span class="error call-message">${n.message.slice(0, 120)}</span>` : ""}
        </li>`,
      )}
    </ul>
  </div>`;
};
