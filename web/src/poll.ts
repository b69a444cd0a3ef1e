import { useEffect, useState } from "preact/hooks";

/**
 * Reads `load` now, again every `everyMs` and whenever `tick` changes (a new snapshot: something happened), at
 * most one read at a time. Returns the last answer, or the last error's message.
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
  useEffect(() => {
    let live = true;
    load().then(
      (d) => {
        if (!live) return;
        setData(d);
        setError(null);
      },
      (e: Error) => live && setError(e.message),
    );
    return () => {
      live = false;
    };
  }, [key, tick, n]);
  useEffect(() => {
    const t = setInterval(() => setN((x) => x + 1), everyMs);
    return () => clearInterval(t);
  }, [key, everyMs]);
  return { data, error, reload: () => setN((x) => x + 1) };
};
