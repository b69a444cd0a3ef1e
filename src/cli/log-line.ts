// The `pretty` log format: one pino JSON entry as one line a person reads, e.g.
//   14:25:21.029 WARN  handler failed node=worker-1 method=divide code=FLEETLINK_E_HANDLER_FAILED err="cannot divide 1 by zero"
// Always one line (an error's stack is left to the JSON format), so `grep` and `tail -f` work on it.

const LEVELS: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};
/** ANSI colours per level, used only when the line goes to a terminal. */
const COLOURS: Record<number, string> = { 10: "90", 20: "36", 30: "32", 40: "33", 50: "31", 60: "35" };
/** pino's own fields, shown as time, level and message, or dropped (pid, hostname: the same on every line). */
const OWN = new Set(["level", "time", "msg", "pid", "hostname"]);

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** A field's value: bare when it is one simple word, JSON otherwise (quoted strings, objects). */
const value = (v: unknown): string => {
  if (typeof v === "string") return /^[\w.:/@+-]+$/.test(v) ? v : JSON.stringify(v);
  if (v && typeof v === "object" && "message" in v) {
    // A serialized Error ({ type, message, stack }): its type and message; the stack is in the JSON format.
    const e = v as { type?: unknown; message?: unknown };
    return JSON.stringify(
      `${typeof e.type === "string" && e.type !== "Error" ? `${e.type}: ` : ""}${e.message}`,
    );
  }
  return JSON.stringify(v) ?? String(v);
};

/** Formats one line of pino's JSON output; a line that is not JSON is returned as it is. */
export const prettyLine = (json: string, colour = false): string => {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith("\n") ? json : `${json}\n`;
  }
  const t = new Date(typeof o.time === "number" ? o.time : Date.now());
  const time = `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)}`;
  const n = typeof o.level === "number" ? o.level : 30;
  const name = (LEVELS[n] ?? String(o.level)).padEnd(5);
  const level = colour ? `\u001b[${COLOURS[n] ?? "0"}m${name}\u001b[0m` : name;
  const fields = Object.entries(o)
    .filter(([k, v]) => !OWN.has(k) && v !== undefined)
    .map(([k, v]) => `${k}=${value(v)}`);
  return `${[time, level, typeof o.msg === "string" ? o.msg : "", ...fields].filter(Boolean).join(" ")}\n`;
};
