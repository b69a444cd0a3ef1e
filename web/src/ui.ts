import { html } from "htm/preact";

/** "3 s ago" / "in 8 s", relative to the snapshot's time (the store's clock, not the browser's). */
export const ago = (t: number | null | undefined, now: number): string => {
  if (t == null) return "—";
  const d = Math.round((now - t) / 1000);
  const abs = Math.abs(d);
  const text =
    abs < 90 ? `${abs} s` : abs < 5400 ? `${Math.round(abs / 60)} min` : `${Math.round(abs / 3600)} h`;
  return d >= 0 ? `${text} ago` : `in ${text}`;
};

export const time = (t: number): string => new Date(t).toLocaleTimeString();

/** A short id: enough to tell nodes and runs apart on screen (the full one is in the title). */
export const short = (id: string): string => id.slice(-8);

export const Badge = ({ kind, text }: { kind: string; text?: string }) =>
  html`<span class=${`badge badge-${kind}`}>${text ?? kind}</span>`;

export const Stat = ({ label, value, id }: { label: string; value: string | number; id: string }) =>
  html`<div class="stat" data-testid=${`stat-${id}`}><div class="stat-value">${value}</div><div class="stat-label">${label}</div></div>`;

export const Empty = ({ text }: { text: string }) => html`<p class="empty">${text}</p>`;
