import { html } from "htm/preact";
import { getRates } from "./api.ts";
import { usePoll } from "./poll.ts";
import { Spark } from "./spark.ts";
import { When } from "./ui.ts";

/** Pushes, replies and errors per second over the last hour, fleet-wide (GET /v1/rates). */
export const RateCharts = () => {
  const { data, error } = usePoll(getRates, "rates", null, 10_000);
  if (error) return html`<p class="error">${error}</p>`;
  if (!data) return "";
  if (data.samples === null)
    return html`<p class="muted" data-testid="charts-hidden">Fleet-wide rates add up every tenant's work: not shown to a tenant's token.</p>`;
  const s = data.samples;
  return html`<section class="charts" data-testid="charts">
    <${Spark} id="pushes" label="pushes" values=${s.map((x) => x.pushes)} />
    <${Spark} id="replies" label="replies" values=${s.map((x) => x.replies)} />
    <${Spark} id="errors" label="errors" values=${s.map((x) => x.errors)} />
    <p class="muted">Store-wide, one sample every ${data.intervalMs / 1000} s, since this replica started
      (<${When} t=${data.startedAt} now=${Date.now()} />).</p>
  </section>`;
};
