import { html } from "htm/preact";

/** An inline SVG sparkline of `values` (oldest first), scaled to its own maximum; no chart library. */
export const Spark = ({ values, label, id }: { values: number[]; label: string; id: string }) => {
  const w = 240;
  const h = 48;
  const max = Math.max(...values, 0);
  const now = values.length > 0 ? values[values.length - 1]! : 0;
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const y = (v: number) => (max === 0 ? h - 1 : h - 1 - (v / max) * (h - 2));
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  return html`<figure class="spark" data-testid=${`chart-${id}`} data-now=${now.toFixed(2)} data-max=${max.toFixed(2)} data-samples=${values.length}>
    <figcaption>${label}: <strong>${now.toFixed(1)}</strong>/s <span class="muted">(max ${max.toFixed(1)})</span></figcaption>
    <svg viewBox=${`0 0 ${w} ${h}`} width=${w} height=${h} role="img" aria-label=${`${label} over the last hour`}>
      <line x1="0" y1=${h - 1} x2=${w} y2=${h - 1} class="spark-axis" />
      ${values.length > 1 ? html`<polyline points=${points} class="spark-line" />` : ""}
    </svg>
  </figure>`;
};
