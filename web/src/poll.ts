import { useEffect, useRef, useState } from "preact/hooks";

/** Least time between two reads of one poll, in ms. */
const MIN_GAP_MS = 1000;

/**
 * Reads `load` now, again every `everyMs` and whenever `tick` changes (a new snapshot: something happened), at
 * most once a second. Returns the last answer, or the last error's message.
 */
export const usePoll = <T>(
  load: () => Promise<T>,
  key: string,
  tick: unknown,
  everyMs = 5000,
): { data: T | null; error: string | null; reload: () => void } => {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [n, setN] = useState(0);
  // A new key (another call, another filter) starts empty.
  useEffect(() => {
    setData(null);
    setError(null);
  }, [key]);
  const last = useRef({ key: "", at: 0 });
  const current = useRef(key);
  current.current = key;
  /** Reads started, and the newest whose answer is shown: an older answer arriving late is dropped. */
  const seq = useRef({ started: 0, shown: 0 });
  useEffect(() => {
    const run = () => {
      last.current = { key, at: Date.now() };
      const mine = ++seq.current.started;
      // An answer for another key (the page moved on), or older than one shown, is dropped.
      const fresh = () => current.current === key && mine > seq.current.shown;
      load().then(
        (d) => {
          if (!fresh()) return;
          seq.current.shown = mine;
          setData(d);
          setError(null);
        },
        (e: Error) => {
          if (fresh()) setError(e.message);
        },
      );
    };
    // Snapshots come up to 4 times a second: a page reads at most once a second (the last change is not lost).
    const wait = last.current.key === key ? last.current.at + MIN_GAP_MS - Date.now() : 0;
    if (wait <= 0) {
      run();
      return;
    }
    const timer = setTimeout(run, wait);
    return () => clearTimeout(timer);
  }, [key, tick, n]);
  useEffect(() => {
    const t = setInterval(() => setN((x) => x + 1), everyMs);
    return () => clearInterval(t);
  }, [key, everyMs]);
  return { data, error, reload: () => setN((x) => x + 1) };
};
