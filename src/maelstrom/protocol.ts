/** Jepsen Maelstrom's wire protocol: one JSON message per line, `{ src, dest, body }`. */

export interface Body {
  type: string;
  msg_id?: number;
  in_reply_to?: number;
  [k: string]: unknown;
}

export interface Message {
  src: string;
  dest: string;
  body: Body;
  id?: number;
}

/**
 * Maelstrom's standard error codes. Definite: the operation surely did not happen; indefinite: it may have.
 */
export const MaelstromErrors = {
  timeout: { code: 0, definite: false },
  "node-not-found": { code: 1, definite: true },
  "not-supported": { code: 10, definite: true },
  "temporarily-unavailable": { code: 11, definite: true },
  "malformed-request": { code: 12, definite: true },
  crash: { code: 13, definite: false },
  abort: { code: 14, definite: true },
  "key-does-not-exist": { code: 20, definite: true },
  "key-already-exists": { code: 21, definite: true },
  "precondition-failed": { code: 22, definite: true },
  "txn-conflict": { code: 30, definite: true },
} as const;
export type MaelstromErrorName = keyof typeof MaelstromErrors;

const byCode = new Map<number, MaelstromErrorName>(
  Object.entries(MaelstromErrors).map(([k, v]) => [v.code, k as MaelstromErrorName]),
);

/** An error body from (or for) a Maelstrom peer. */
export class RPCError extends Error {
  readonly code: number;
  constructor(code: number, text: string) {
    super(text);
    this.code = code;
  }
  static of(name: MaelstromErrorName, text: string = name): RPCError {
    return new RPCError(MaelstromErrors[name].code, text);
  }
  /** Known codes say whether they are definite; unknown codes are treated as indefinite. */
  get definite(): boolean {
    const name = byCode.get(this.code);
    return name ? MaelstromErrors[name].definite : false;
  }
  get codeName(): string {
    return byCode.get(this.code) ?? `code-${this.code}`;
  }
  toBody(inReplyTo?: number): Body {
    return {
      type: "error",
      code: this.code,
      text: this.message,
      ...(inReplyTo === undefined ? {} : { in_reply_to: inReplyTo }),
    };
  }
}

/** Parses one line; returns null (and the reason) for anything that is not a Maelstrom message. */
export const parseMessage = (line: string): { msg: Message } | { error: string } => {
  let m: unknown;
  try {
    m = JSON.parse(line);
  } catch {
    return { error: "not JSON" };
  }
  const o = m as Record<string, unknown>;
  if (typeof o !== "object" || o === null) return { error: "not an object" };
  if (typeof o.src !== "string" || typeof o.dest !== "string") return { error: "missing src or dest" };
  const b = o.body as Record<string, unknown>;
  if (typeof b !== "object" || b === null || typeof b.type !== "string")
    return { error: "missing body.type" };
  // Unknown top-level fields are ignored, as Maelstrom requires.
  return { msg: { src: o.src, dest: o.dest, body: b as Body } };
};
