import type { Transport } from "./transport.ts";

/** The two ends of a line-oriented byte stream (stdin/stdout of a process, or a child's pipes). */
export interface LineIO {
  onData(cb: (chunk: string) => void): void;
  onEnd(cb: () => void): void;
  write(s: string): void;
  end?(): void;
}

/** A Transport over newline-delimited text: one frame per line (Maelstrom's stdin/stdout protocol). */
export const lineTransport = (io: LineIO): Transport => {
  let open = true;
  let buf = "";
  const msg: ((f: string) => void)[] = [];
  const closed: ((c: number, r: string) => void)[] = [];
  io.onData((chunk) => {
    buf += chunk;
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) for (const cb of msg) cb(line);
      nl = buf.indexOf("\n");
    }
  });
  io.onEnd(() => {
    if (!open) return;
    open = false;
    for (const cb of closed) cb(1000, "end of input");
  });
  return {
    send: (frame) => {
      if (open) io.write(`${frame}\n`);
    },
    close: () => {
      if (!open) return;
      open = false;
      io.end?.();
      for (const cb of closed) cb(1000, "closed");
    },
    onMessage: (cb) => void msg.push(cb),
    onClose: (cb) => void closed.push(cb),
    get isOpen() {
      return open;
    },
  };
};
