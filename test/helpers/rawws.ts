// A deliberately dumb WebSocket client over a raw TCP socket, for sending what no real client would:
// any opcode, RSV bits, unmasked frames, lying length headers, broken fragmentation.
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export const Op = { cont: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

export interface FrameSpec {
  opcode: number;
  payload?: Buffer | string;
  /** FIN bit. (Default: true) */
  fin?: boolean;
  /** RSV1..3 as a 3-bit number (4 = RSV1). (Default: 0) */
  rsv?: number;
  /** Mask the payload, as a client must. (Default: true) */
  mask?: boolean;
  /** Length announced in the header instead of the payload's (announce 9 MiB, send 10 bytes). */
  length?: number;
}

/** Encodes one frame exactly as specified, valid or not. */
export const encodeFrame = (f: FrameSpec): Buffer => {
  const payload = typeof f.payload === "string" ? Buffer.from(f.payload) : (f.payload ?? Buffer.alloc(0));
  const len = f.length ?? payload.length;
  const mask = f.mask ?? true;
  const b0 = ((f.fin ?? true) ? 0x80 : 0) | (((f.rsv ?? 0) & 7) << 4) | (f.opcode & 0xf);
  let head: Buffer;
  if (len < 126) head = Buffer.from([b0, len]);
  else if (len < 65536) {
    head = Buffer.alloc(4);
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = b0;
  if (!mask) return Buffer.concat([head, payload]);
  head[1]! |= 0x80;
  const key = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
  return Buffer.concat([head, key, body]);
};

/** A close frame's payload: 2-byte code + reason. */
export const closePayload = (code: number, reason = ""): Buffer => {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2);
  return b;
};

export interface ServerFrame {
  opcode: number;
  fin: boolean;
  payload: Buffer;
}

export interface Ended {
  /** Code of the server's close frame, if it sent one. */
  code: number | null;
  reason: string;
  /** The TCP connection was closed (by either side) before the wait ran out. */
  tcpClosed: boolean;
}

export interface RawWs {
  socket: net.Socket;
  /** Frames the server sent, in order (parsed as they arrive). */
  frames: ServerFrame[];
  /** Text frames the server sent, decoded. */
  texts(): string[];
  /** Writes raw bytes (usually from encodeFrame). */
  write(bytes: Buffer): void;
  send(f: FrameSpec): void;
  /** Resolves when a frame matching `pred` arrives (or rejects after `timeoutMs`). */
  next(pred: (f: ServerFrame) => boolean, timeoutMs?: number): Promise<ServerFrame>;
  /** Waits for the TCP connection to end, at most `timeoutMs`; reports the close code seen. */
  ended(timeoutMs?: number): Promise<Ended>;
  destroy(): void;
}

export interface UpgradeResult {
  status: number;
  headers: string;
  /** Set when the server switched protocols (101) with a correct Sec-WebSocket-Accept. */
  ws?: RawWs;
  /** What followed a refusal's headers (the error body). */
  body: string;
}

/** Opens a TCP connection and sends an upgrade request for `path` with these extra headers. */
export const rawUpgrade = (
  baseUrl: string,
  path: string,
  headers: Record<string, string> = {},
  timeoutMs = 5000,
): Promise<UpgradeResult> =>
  new Promise((resolve, reject) => {
    const u = new URL(baseUrl);
    const key = randomBytes(16).toString("base64");
    const socket = net.connect(Number(u.port), u.hostname);
    socket.on("error", () => {}); // resets are what the tests provoke; `ended` reports them
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no upgrade answer from ${path} in ${timeoutMs} ms`));
    }, timeoutMs);
    const lines = [
      `GET ${path} HTTP/1.1`,
      `Host: ${u.host}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${key}`,
      "Sec-WebSocket-Version: 13",
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ];
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    let buf: Buffer = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString("latin1");
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      const rest = buf.subarray(end + 4);
      if (status !== 101) {
        // A refusal: collect its body until the server closes.
        let body = rest.toString();
        socket.off("data", onData);
        socket.on("data", (x: Buffer) => {
          body += x.toString();
        });
        socket.once("close", () => {
          clearTimeout(timer);
          resolve({ status, headers: head, body });
        });
        return;
      }
      clearTimeout(timer);
      socket.off("data", onData);
      const accept = createHash("sha1")
        .update(key + GUID)
        .digest("base64");
      if (!head.toLowerCase().includes(`sec-websocket-accept: ${accept.toLowerCase()}`)) {
        socket.destroy();
        return reject(new Error(`bad Sec-WebSocket-Accept in:\n${head}`));
      }
      resolve({ status, headers: head, body: "", ws: wrap(socket, rest) });
    };
    socket.on("data", onData);
  });

/** Like rawUpgrade, but throws unless the server switched protocols. */
export const openRaw = async (baseUrl: string, path: string, auth: string): Promise<RawWs> => {
  const r = await rawUpgrade(baseUrl, path, { Authorization: `Bearer ${auth}` });
  if (!r.ws) throw new Error(`upgrade to ${path} refused: ${r.status} ${r.body}`);
  return r.ws;
};

const wrap = (socket: net.Socket, initial: Buffer): RawWs => {
  const frames: ServerFrame[] = [];
  const waiters: { pred: (f: ServerFrame) => boolean; res: (f: ServerFrame) => void }[] = [];
  let closeCode: number | null = null;
  let closeReason = "";
  let tcpClosed = false;
  const closedP = new Promise<void>((r) =>
    socket.once("close", () => {
      tcpClosed = true;
      r();
    }),
  );
  let buf: Buffer = Buffer.alloc(0);
  const parse = () => {
    for (;;) {
      if (buf.length < 2) return;
      const fin = (buf[0]! & 0x80) !== 0;
      const opcode = buf[0]! & 0xf;
      let len = buf[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      if (buf.length < off + len) return;
      const f = { opcode, fin, payload: buf.subarray(off, off + len) };
      buf = buf.subarray(off + len);
      frames.push(f);
      if (opcode === Op.close) {
        closeCode = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
        closeReason = f.payload.subarray(2).toString();
        // Answer like a well-behaved client, so the server can end the TCP connection at once.
        if (socket.writable) socket.end(encodeFrame({ opcode: Op.close, payload: f.payload.subarray(0, 2) }));
      }
      for (const w of waiters.splice(0))
        if (w.pred(f)) w.res(f);
        else waiters.push(w);
    }
  };
  socket.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    parse();
  });
  if (initial.length) {
    buf = initial;
    parse();
  }
  const write = (bytes: Buffer) => {
    if (socket.writable) socket.write(bytes);
  };
  return {
    socket,
    frames,
    texts: () => frames.filter((f) => f.opcode === Op.text).map((f) => f.payload.toString()),
    write,
    send: (f) => write(encodeFrame(f)),
    next: (pred, timeoutMs = 5000) => {
      const seen = frames.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((res, rej) => {
        const t = setTimeout(() => rej(new Error(`no matching frame in ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          pred,
          res: (f) => {
            clearTimeout(t);
            res(f);
          },
        });
      });
    },
    ended: async (timeoutMs = 2000) => {
      let t: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([closedP, new Promise((r) => (t = setTimeout(r, timeoutMs)))]);
      clearTimeout(t);
      return { code: closeCode, reason: closeReason, tcpClosed };
    },
    destroy: () => socket.destroy(),
  };
};

const MiB = 1024 * 1024;
const helloFrame = JSON.stringify({
  t: "req",
  id: "0198c2a0-0000-7000-8000-000000000000",
  m: "hello",
  b: { inflight: [] },
});

/** WebSocket protocol violations (RFC 6455) and the close code a conforming server answers each with. */
export const violations: { name: string; frames: FrameSpec[]; code: number }[] = [
  {
    name: "a frame header announcing 9 MiB (beyond the frame limit)",
    frames: [{ opcode: Op.text, length: 9 * MiB, payload: "{" }],
    code: 1009,
  },
  {
    name: "invalid UTF-8 in a text frame",
    frames: [{ opcode: Op.text, payload: Buffer.from([0x7b, 0xff, 0xfe, 0xc3, 0x28, 0x7d]) }],
    code: 1007,
  },
  {
    name: "an unmasked client frame",
    frames: [{ opcode: Op.text, payload: helloFrame, mask: false }],
    code: 1002,
  },
  {
    name: "RSV1 set without a negotiated extension",
    frames: [{ opcode: Op.text, payload: helloFrame, rsv: 4 }],
    code: 1002,
  },
  { name: "reserved data opcode 0x3", frames: [{ opcode: 0x3, payload: "x" }], code: 1002 },
  { name: "reserved control opcode 0xB", frames: [{ opcode: 0xb, payload: "x" }], code: 1002 },
  {
    name: "a ping with a 126-byte payload",
    frames: [{ opcode: Op.ping, payload: "p".repeat(126) }],
    code: 1002,
  },
  {
    name: "a close frame with code 999",
    frames: [{ opcode: Op.close, payload: closePayload(999) }],
    code: 1002,
  },
  {
    name: "a fragmented ping (FIN=0 on a control frame)",
    frames: [{ opcode: Op.ping, fin: false }],
    code: 1002,
  },
  { name: "a stray continuation frame", frames: [{ opcode: Op.cont, payload: "tail" }], code: 1002 },
];

/** Sends an HTTP request on a fresh connection and resets it (RST) after `delayMs`, answer or not. */
export const requestThenReset = (baseUrl: string, request: string, delayMs: number): Promise<void> =>
  new Promise((resolve) => {
    const u = new URL(baseUrl);
    const socket = net.connect(Number(u.port), u.hostname, () => {
      socket.write(request);
      const reset = () => {
        socket.resetAndDestroy();
        resolve();
      };
      if (delayMs === 0) reset();
      else setTimeout(reset, delayMs);
    });
    socket.on("error", () => resolve());
  });
