/** One client operation, from invocation to completion (times in ms since the run started). */
export interface Op {
  process: string;
  node: string;
  f: string;
  /** What the client sent (the broadcast value, the g-set element…). */
  value: unknown;
  invoke: number;
  complete: number | null;
  /** ok: acknowledged; fail: definite error; info: timeout or indefinite error. */
  type: "ok" | "fail" | "info" | "pending";
  /** What the node answered (the read's values…). */
  result: unknown;
  final?: boolean;
}
