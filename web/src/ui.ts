import { html } from "htm/preact";
import { nodeLabel, shortId } from "../../src/protocol/node-label.ts";

/** "3 s ago" / "in 8 s", relative to the snapshot's time (the store's clock, not the browser's). */
export const ago = (t: number | null | undefined, now: number): string => {
  if (t == null) return "—";
  const d = Math.round((now - t) / 1000);
  const abs = Math.abs(d);
  const text =
    abs < 90 ? `${abs} s` : abs < 5400 ? `${Math.round(abs / 60)} min` : `${Math.round(abs / 3600)} h`;
  return d >= 0 ? `${text} ago` : `in ${text}`;
};

export const iso = (t: number): string => new Date(t).toISOString();

/** A time as the page shows it: relative to the snapshot's time, the full ISO date in the title. */
export const When = ({ t, now }: { t: number | null | undefined; now: number }) =>
  t == null ? "—" : html`<time datetime=${iso(t)} title=${iso(t)}>${ago(t, now)}</time>`;

/** A duration: "840 ms", "2.4 s", "3.1 min". */
export const ms = (v: number | null | undefined): string =>
  v == null
    ? "—"
    : v < 1000
      ? `${Math.round(v)} ms`
      : v < 90_000
        ? `${(v / 1000).toFixed(1)} s`
        : `${(v / 60_000).toFixed(1)} min`;

/** Bytes: "512 B", "4.0 KiB", "3.2 MiB". */
export const size = (b: number): string =>
  b < 1024 ? `${b} B` : b < 1024 ** 2 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / 1024 ** 2).toFixed(1)} MiB`;

/** A short id: enough to tell nodes and runs apart on screen (the full one is in the title). */
export const short = (id: string): string => id.slice(-8);

export const Badge = ({ kind, text }: { kind: string; text?: string }) =>
  html`<span class=${`badge badge-${kind}`}>${text ?? kind}</span>`;

export const Stat = ({ label, value, id }: { label: string; value: string | number; id: string }) =>
  html`<div class="stat" data-testid=${`stat-${id}`}><div class="stat-value">${value}</div><div class="stat-label">${label}</div></div>`;

export const Empty = ({ text }: { text: string }) => html`<p class="empty">${text}</p>`;

/**
 * An error code as every view and the CLI show it: without fleetlink's `FLEETLINK_E_` prefix
 * (`HANDLER_FAILED`), the full code in the title.
 */
export const shortCode = (code: string): string => code.replace(/^FLEETLINK_E_/, "");
export const Code = ({ code, id }: { code: string; id?: string }) =>
  html`<strong class="code" title=${code} data-testid=${id}>${shortCode(code)}</strong>`;

/**
 * Attempts of an instruction: "n/max" while it may still be delivered again (pending, leased), just "n" once it
 * has ended (no more attempts will come, whatever the maximum).
 */
export const attempts = (n: number, max: number, state: string): string =>
  state === "pending" || state === "leased" ? `${n}/${max}` : `${n}`;

/** A node as the CLI names it, `worker-1 (…a1b2c3d4)` (`…a1b2c3d4` when its name is not known); the id in the title. */
export const NodeName = ({ id, names }: { id: string; names: ReadonlyMap<string, string> }) => {
  const name = names.get(id);
  return html`<span class="node-name" title=${id} data-testid="node-name">${name ? nodeLabel(id, name) : shortId(id)}</span>`;
};

/** Node id → name, from the feed's nodes. */
export const nameMap = (nodes: readonly { id: string; name: string }[]): ReadonlyMap<string, string> =>
  new Map(nodes.map((n) => [n.id, n.name]));
