import type { Results } from "./checker.ts";
import type { NemesisEvent, TestParams } from "./params.ts";

const esc = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

/** A self-contained HTML report: verdict, numbers, and stable latency over time as an SVG scatter plot. */
export const renderReport = (r: Results & { params: TestParams; nemesis: NemesisEvent[] }): string => {
  const pts = r.latencyPoints ?? [];
  const W = 900;
  const H = 320;
  const pad = 50;
  const tMax = Math.max(1, ...pts.map((p) => p[0]), ...r.nemesis.map((n) => n.time));
  const yMax = Math.max(100, ...pts.map((p) => p[1]));
  const x = (t: number) => pad + (t / tMax) * (W - 2 * pad);
  const y = (v: number) => H - pad - (v / yMax) * (H - 2 * pad);
  const bands: string[] = [];
  let start: number | null = null;
  for (const e of r.nemesis) {
    if (e.action === "start") start = e.time;
    else if (start !== null) {
      bands.push(
        `<rect x="${x(start)}" y="${pad}" width="${x(e.time) - x(start)}" height="${H - 2 * pad}" fill="#fdd" />`,
      );
      start = null;
    }
  }
  const dots = pts
    .map((p) => `<circle cx="${x(p[0]).toFixed(1)}" cy="${y(p[1]).toFixed(1)}" r="2" fill="#36c" />`)
    .join("");
  const ticks = [0, 0.25, 0.5, 0.75, 1]
    .map(
      (f) =>
        `<text x="${pad - 6}" y="${y(f * yMax) + 4}" text-anchor="end" font-size="11">${Math.round(f * yMax)}</text>` +
        `<text x="${x(f * tMax)}" y="${H - pad + 16}" text-anchor="middle" font-size="11">${((f * tMax) / 1000).toFixed(1)}s</text>`,
    )
    .join("");
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" role="img" aria-label="stable latency over time">
<rect width="${W}" height="${H}" fill="white"/>${bands.join("")}
<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="#333"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${H - pad}" stroke="#333"/>
${ticks}${dots}
<text x="${W / 2}" y="${H - 10}" text-anchor="middle" font-size="12">acknowledgement time (partitions shaded)</text>
<text x="14" y="${H / 2}" transform="rotate(-90 14 ${H / 2})" text-anchor="middle" font-size="12">stable latency (ms)</text></svg>`;
  const row = (k: string, v: unknown) =>
    `<tr><th>${esc(k)}</th><td>${esc(typeof v === "string" ? v : JSON.stringify(v))}</td></tr>`;
  return `<!doctype html><html><head><meta charset="utf-8"><title>fleetlink maelstrom: ${esc(r.workload)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em}th{text-align:left;padding-right:1em}.ok{color:#080}.bad{color:#c00}</style></head><body>
<h1>${esc(r.workload)}: <span class="${r.valid ? "ok" : "bad"}">${r.valid ? "valid" : "INVALID"}</span></h1>
${r.problems.length ? `<ul>${r.problems.map((p) => `<li class="bad">${esc(p)}</li>`).join("")}</ul>` : ""}
<table>${row("parameters", r.params)}${row("operations", r.ops)}${row("messages per op (servers)", r.msgsPerOp.toFixed(2))}${row("server messages", r.serverMsgs)}${row("dropped by partitions", r.droppedMsgs)}${row("stable latency (ms)", r.stableLatencyMs ?? "n/a")}${row("stale reads", r.staleReads ?? "n/a")}${row("lost", r.lost ?? [])}</table>
<h2>Stable latency over time</h2>${svg}
<h2>Nemesis</h2><ul>${r.nemesis.map((n) => `<li>${(n.time / 1000).toFixed(2)} s ${esc(n.action)}: ${esc(n.description)}</li>`).join("")}</ul>
</body></html>`;
};
