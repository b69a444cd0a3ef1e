import type { Snapshot } from "../../src/hub/dashboard/snapshot.ts";

export type FeedState =
  | { state: "connecting" }
  | { state: "live" }
  | { state: "retrying"; reason: string; inMs: number }
  | { state: "refused"; status: number; reason: string };

export interface FeedHandlers {
  onSnapshot(s: Snapshot): void;
  onState(s: FeedState): void;
}

/**
 * Reads the hub's live feed (`GET /v1/events`, Server-Sent Events) with fetch, so the admin token goes in the
 * Authorization header (EventSource cannot send headers). Reconnects with backoff; a refusal (401/403, or a
 * `refused` event: the token was revoked or expired while the feed was open) stops.
 * Returns a function that closes the feed.
 */
export const openFeed = (token: string, runId: string | null, h: FeedHandlers): (() => void) => {
  const abort = new AbortController();
  let delay = 500;
  const run = async () => {
    while (!abort.signal.aborted) {
      h.onState({ state: "connecting" });
      let reason = "connection lost";
      try {
        const res = await fetch(`/v1/events${runId ? `?run=${encodeURIComponent(runId)}` : ""}`, {
          headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
          signal: abort.signal,
        });
        if (res.status === 401 || res.status === 403 || res.status === 404) {
          const body = (await res.json().catch(() => null)) as { error?: { message: string } } | null;
          h.onState({ state: "refused", status: res.status, reason: body?.error?.message ?? res.statusText });
          return;
        }
        if (!res.ok || !res.body) throw new Error(`the hub answered ${res.status}`);
        h.onState({ state: "live" });
        delay = 500;
        let refused: { status: number; message: string } | null = null;
        await readEvents(res.body, (event, data) => {
          if (event === "snapshot") h.onSnapshot(JSON.parse(data) as Snapshot);
          else if (event === "problem") reason = (JSON.parse(data) as { message: string }).message;
          else if (event === "refused") refused = JSON.parse(data) as { status: number; message: string };
        });
        if (refused) {
          const r: { status: number; message: string } = refused;
          h.onState({ state: "refused", status: r.status, reason: r.message });
          return;
        }
      } catch (e) {
        if (abort.signal.aborted) return;
        reason = (e as Error).message;
      }
      h.onState({ state: "retrying", reason, inMs: delay });
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  };
  void run();
  return () => abort.abort();
};

/** Splits an event stream into (event, data) pairs; comment lines (keep-alives) are skipped. */
const readEvents = async (body: ReadableStream<Uint8Array>, on: (event: string, data: string) => void) => {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let end = buf.indexOf("\n\n");
    while (end >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length > 0) on(event, data.join("\n"));
      end = buf.indexOf("\n\n");
    }
  }
};
