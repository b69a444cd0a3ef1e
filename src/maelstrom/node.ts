import type { LineIO } from "../stream/lines.ts";
import { lineTransport } from "../stream/lines.ts";
import { PendingCalls } from "../stream/pending.ts";
import type { Transport } from "../stream/transport.ts";
import { type Body, type Message, parseMessage, RPCError } from "./protocol.ts";

export type MaelstromHandler = (msg: Message) => void | Promise<void>;

export interface MaelstromNodeOptions {
  /** Default timeout of `rpc`, in ms. (Default: 1000) */
  rpcTimeoutMs?: number;
  /** Where diagnostics go; never stdout, which belongs to the protocol. (Default: stderr) */
  log?: (line: string) => void;
}

/**
 * A Maelstrom node, in the shape of Maelstrom's own node libraries: `on(type, handler)`, `reply`, `send`,
 * `rpc`. Built on the shared pending-calls map (keyed by msg_id) and a line transport over stdin/stdout.
 */
export class MaelstromNode {
  id = "";
  nodeIds: string[] = [];
  private nextMsgId = 1;
  private readonly handlers = new Map<string, MaelstromHandler>();
  private readonly pending = new PendingCalls<Body>();
  private transport: Transport | null = null;
  private readonly initWaiters: (() => void)[] = [];
  private readonly opts: Required<MaelstromNodeOptions>;

  constructor(opts: MaelstromNodeOptions = {}) {
    this.opts = {
      rpcTimeoutMs: opts.rpcTimeoutMs ?? 1000,
      log: opts.log ?? ((l) => process.stderr.write(`${l}\n`)),
    };
    this.on("init", (msg) => {
      this.id = msg.body.node_id as string;
      this.nodeIds = msg.body.node_ids as string[];
      this.reply(msg, { type: "init_ok" });
      for (const w of this.initWaiters.splice(0)) w();
    });
  }

  log(line: string): void {
    this.opts.log(line);
  }

  /** Other nodes of the cluster. */
  get peers(): string[] {
    return this.nodeIds.filter((n) => n !== this.id);
  }

  /** Resolves once `init` has arrived. */
  initialized(): Promise<void> {
    return this.id ? Promise.resolve() : new Promise((r) => this.initWaiters.push(r));
  }

  on(type: string, handler: MaelstromHandler): this {
    this.handlers.set(type, handler);
    return this;
  }

  send(dest: string, body: Body): void {
    this.transport?.send(JSON.stringify({ src: this.id, dest, body }));
  }

  reply(req: Message, body: Body): void {
    this.send(req.src, { ...body, in_reply_to: req.body.msg_id });
  }

  /** Sends a request and resolves with the reply body; an error reply rejects with RPCError. */
  rpc(dest: string, body: Body, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Body> {
    const msgId = this.nextMsgId++;
    const p = this.pending.add(String(msgId), {
      timeoutMs: opts.timeoutMs ?? this.opts.rpcTimeoutMs,
      signal: opts.signal,
    });
    this.send(dest, { ...body, msg_id: msgId });
    return p.then(
      (b) => {
        if (b.type === "error") throw new RPCError(Number(b.code), String(b.text ?? "error"));
        return b;
      },
      (e: unknown) => {
        throw e instanceof RPCError ? e : RPCError.of("timeout", (e as Error).message);
      },
    );
  }

  /** A fresh msg_id, for nodes that track their own requests. */
  newMsgId(): number {
    return this.nextMsgId++;
  }

  private async dispatch(msg: Message): Promise<void> {
    const b = msg.body;
    if (b.in_reply_to !== undefined) {
      // A reply: hand it to its waiting rpc; a reply nobody waits for (timed out) is dropped.
      this.pending.deliver(String(b.in_reply_to), b);
      return;
    }
    const h = this.handlers.get(b.type);
    try {
      if (!h) throw RPCError.of("not-supported", `unsupported message type ${b.type}`);
      await h(msg);
    } catch (e) {
      const err = e instanceof RPCError ? e : RPCError.of("crash", (e as Error).message ?? String(e));
      if (!(e instanceof RPCError)) this.log(`handler ${b.type} failed: ${(e as Error).stack ?? e}`);
      if (b.msg_id !== undefined) this.reply(msg, err.toBody());
    }
  }

  /** Serves messages from a transport (default: this process's stdin/stdout) until it closes. */
  run(transport: Transport = lineTransport(stdio())): Promise<void> {
    this.transport = transport;
    transport.onMessage((line) => {
      const parsed = parseMessage(line);
      if ("error" in parsed) {
        this.log(`malformed message (${parsed.error}): ${line.slice(0, 200)}`);
        return;
      }
      void this.dispatch(parsed.msg);
    });
    return new Promise((resolve) => transport.onClose(() => resolve()));
  }
}

const stdio = (): LineIO => ({
  onData: (cb) => {
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", (d: string) => cb(d));
  },
  onEnd: (cb) => void process.stdin.on("end", cb),
  write: (s) => void process.stdout.write(s),
});
