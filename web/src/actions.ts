import { html } from "htm/preact";
import { useState } from "preact/hooks";

/**
 * A button for an action the hub may refuse: disabled with the reason when the logged-in role may not do it
 * (the hub refuses it anyway: 403), a confirmation step for a destructive one, and the hub's answer shown.
 */
export const Action = ({
  id,
  label,
  allowed,
  needs,
  confirm,
  run,
}: {
  id: string;
  label: string;
  allowed: boolean;
  /** Why it is disabled ("needs role admin"). */
  needs: string;
  /** The question asked before a destructive action; none: done at once. */
  confirm?: string;
  run: () => Promise<string | undefined>;
}) => {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const [said, setSaid] = useState<{ ok: boolean; text: string } | null>(null);
  const go = async () => {
    setAsking(false);
    setBusy(true);
    try {
      const text = await run();
      setSaid(text ? { ok: true, text } : null);
    } catch (e) {
      setSaid({ ok: false, text: (e as Error).message });
    } finally {
      setBusy(false);
    }
  };
  return html`<span class="action">
    <button data-testid=${id} disabled=${!allowed || busy} title=${allowed ? label : needs}
      onClick=${() => (confirm ? setAsking(true) : go())}>${label}</button>
    ${!allowed ? html` <span class="muted" data-testid=${`${id}-needs`}>${needs}</span>` : ""}
    ${
      asking
        ? html`<span class="confirm" role="alertdialog" data-testid="confirm">${confirm}
            <button class="danger" data-testid="confirm-yes" onClick=${go}>${label}</button>
            <button data-testid="confirm-no" onClick=${() => setAsking(false)}>Cancel</button></span>`
        : ""
    }
    ${said ? html` <span class=${said.ok ? "muted" : "error"} data-testid=${`${id}-said`}>${said.text}</span>` : ""}
  </span>`;
};
