import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import WebSocket from "ws";
import { NodeCheckpoints, type NodeState, type StandbyOptions } from "../checkpoint/node-side.ts";
import { type ObjectStore, openObjectStore } from "../checkpoint/object-store.ts";
import { CloseCode } from "../protocol/close-codes.ts";
import { describeError, ErrorCodes, FleetlinkError, isFleetlinkError } from "../protocol/errors.ts";
import { newId } from "../protocol/ids.ts";
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_JSON_DEPTH,
  tooDeep,
  truncate,
} from "../protocol/limits.ts";
import type { ReplyError } from "../protocol/types.ts";
import { NodeMethods, type WireInstruction, type WireReply } from "../protocol/wire.ts";
import { Channel, type Logger, silentLogger } from "../stream/channel.ts";
import { Liveness, type LivenessRule, watchTransport } from "../stream/liveness.ts";
import { wsTransport } from "../stream/ws.ts";
import { Backoff, type BackoffPolicy, backoffDelay } from "../util/backoff.ts";
import type { Handler } from "./handler.ts";
import type { AgentPlugin, AgentPluginHost } from "./plugin.ts";
import { StatusFeed } from "../stream/status-feed.ts";
import type { AgentStatus } from "./status.ts";

export type { Handler, HandlerContext } from "./handler.ts";

export interface NodeIdentity {
  nodeId: string;
  credential: string;
}

export interface NodeAgentOptions {
  /** Hub replica URLs (http:// or https://); the agent uses any of them and moves on when one fails. */
  hubs: string[];
  name: string;
  handlers: Record<string, Handler>;
  /** Token to enroll with when the agent has no identity yet. */
  enrollToken?: string;
  /** An identity from an earlier enrollment. */
  identity?: NodeIdentity;
  /** File that keeps the identity across restarts (read if present, written after enrolling). */
  identityFile?: string;
  /**
   * Enroll again (as a new node) when the hub refuses this identity (its database was reset, or the node was
   * unregistered). Without it the agent stops in state `rejected` and says what to do. (Default: false)
   */
  reenroll?: boolean;
  /** Heartbeat interval in ms. (Default: 5000) */
  heartbeatIntervalMs?: number;
  /** Timeout for one reply send before it is retried, in ms. (Default: 5000) */
  replyTimeoutMs?: number;
  /** Completed instruction ids remembered, so a redelivered instruction is not run twice. (Default: 10000) */
  rememberCompleted?: number;
  log?: Logger;
  /** Features that run inside the agent and add handlers (e.g. checkpoints); the agent does not import them. */
  plugins?: AgentPlugin[];
  /** State the coordinator can checkpoint and restore (`checkpoint.push` / `checkpoint.pull`). */
  state?: NodeState;
  /** Where checkpoints live: file://DIR or s3://BUCKET/PREFIX. (Default: file://./.fleetlink/checkpoints) */
  checkpointStore?: string | ObjectStore;
  /** Run as a warm standby for one host: pull its newest checkpoint periodically, take over when activated. */
  standby?: StandbyOptions;
}

/** The agent's retry schedules; the numbers differ, the rule (util/backoff.ts) is one. */
const Schedules = {
  /** Enrolling while no hub answers. */
  enroll: { initialMs: 200, maxMs: 5000 },
  /** Reconnecting after a lost stream. */
  reconnect: { initialMs: 100, maxMs: 3000 },
  /** Waiting for an admin to approve the node: polls gently (at least 1 s apart), not a reconnect storm. */
  pending: { initialMs: 2000, maxMs: 5000, jitter: 0.5 },
  /** Replaced by another process with our identity: back off hard (2 s doubling to 30 s). */
  replaced: { initialMs: 2000, maxMs: 30_000, jitter: 0.25 },
  /** Resending a reply no hub acknowledged. */
  reply: { initialMs: 200, maxMs: 5000 },
} as const satisfies Record<string, BackoffPolicy>;

interface Outgoing {
  reply: WireReply;
  attempt: number;
  sending: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

/**
 * A fleet node: dials out to a hub replica, receives the instructions pushed to it, runs their handlers and
 * replies, retrying each reply until a hub acknowledges it (across reconnects and replicas).
 */
export class NodeAgent {
  private readonly o: NodeAgentOptions;
  private readonly feed = new StatusFeed<AgentStatus>({ state: "idle" });
  private identity: NodeIdentity | undefined;
  private channel: Channel | null = null;
  private ws: WebSocket | null = null;
  private hubIndex = 0;
  private stopping = false;
  private readonly running = new Map<string, Promise<void>>();
  private readonly outbox = new Map<string, Outgoing>(); // by instruction id
  private readonly completed = new Map<string, WireReply>(); // by instruction id, oldest first
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private progressTimer: ReturnType<typeof setInterval> | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private readonly liveness: Liveness;
  private readonly reconnects = new Backoff(Schedules.reconnect);
  private readonly pendingPolls = new Backoff(Schedules.pending);
  /** Times in a row our live stream was replaced by another process's (a shared identity). */
  private readonly replacements = new Backoff(Schedules.replaced);
  private pendingApproval = false;
  private refused: string | undefined;
  /** The hub's payload limit, learned at hello. */
  private maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES;
  /** Checkpoint system methods, when the node has state. */
  readonly checkpoints: NodeCheckpoints | undefined;
  private readonly handlers: Record<string, Handler>;

  constructor(o: NodeAgentOptions) {
    if (o.hubs.length === 0)
      throw new FleetlinkError("INVALID_ARGUMENT", "hubs: at least one hub URL", { field: "hubs" });
    this.o = o;
    this.handlers = { ...o.handlers };
    for (const p of o.plugins ?? []) {
      for (const [method, h] of Object.entries(p.handlers(this.pluginHost))) {
        if (method in this.handlers)
          throw new FleetlinkError(
            "INVALID_ARGUMENT",
            `plugins: ${p.name} handles ${method}, which is taken`,
            {
              field: "plugins",
            },
          );
        this.handlers[method] = h;
      }
    }
    if (o.state) {
      const objects =
        typeof o.checkpointStore === "object"
          ? o.checkpointStore
          : openObjectStore(o.checkpointStore ?? `file://${process.cwd()}/.fleetlink/checkpoints`);
      this.checkpoints = new NodeCheckpoints({
        state: o.state,
        objects,
        nodeId: () => this.identity?.nodeId ?? "",
      });
      Object.assign(this.handlers, this.checkpoints.handlers());
    }
    this.log = o.log ?? silentLogger;
    this.liveness = new Liveness(agentLiveness(o.heartbeatIntervalMs ?? 5000));
    this.identity = o.identity;
    if (!this.identity && o.identityFile) {
      try {
        this.identity = JSON.parse(readFileSync(o.identityFile, "utf8")) as NodeIdentity;
      } catch {
        // no identity yet: enroll
      }
    }
  }

  /** What plug-ins see of this agent. */
  private get pluginHost(): AgentPluginHost {
    const agent = this;
    return {
      get nodeId() {
        return agent.identity?.nodeId;
      },
      get log() {
        return agent.log;
      },
    };
  }

  get nodeId(): string | undefined {
    return this.identity?.nodeId;
  }

  get state(): AgentStatus {
    return this.feed.value;
  }

  /** The connection status now and at every change: `for await (const s of agent.status())`. */
  status(): AsyncGenerator<AgentStatus> {
    return this.feed.follow();
  }

  private hub(): string {
    return this.o.hubs[this.hubIndex % this.o.hubs.length]!.replace(/\/$/, "");
  }

  /** Enrolls if needed and starts connecting; resolves once the first connection is online. */
  async start(): Promise<void> {
    if (!this.identity) await this.enroll();
    for (const p of this.o.plugins ?? []) p.start?.(this.pluginHost);
    if (this.o.standby && this.checkpoints)
      this.checkpoints.startStandby(this.o.standby, (m) => this.log.warn({ msg: m }, "standby"));
    this.connect();
    for await (const s of this.status()) {
      if (s.state === "online") return;
      if (s.state === "stopped")
        throw new FleetlinkError("STREAM_CLOSED", "agent stopped before it came online");
      if (s.state === "rejected") throw new FleetlinkError("UNAUTHORIZED", s.reason);
    }
  }

  /**
   * Enrolls, retrying like reconnects (backoff with jitter, across replicas) while no hub answers; a definite
   * refusal (wrong token, name taken, …) ends it with the hub's reason.
   */
  private async enroll(): Promise<void> {
    if (!this.o.enrollToken)
      throw new FleetlinkError("UNAUTHORIZED", "no identity and no enrollToken to enroll with", {
        field: "enrollToken",
      });
    for (let attempt = 0; ; attempt++) {
      if (this.stopping) throw new FleetlinkError("STREAM_CLOSED", "agent stopped while enrolling");
      const hub = this.hub();
      let error: string;
      try {
        const res = await fetch(`${hub}/v1/nodes/enroll`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${this.o.enrollToken}` },
          body: JSON.stringify({
            name: this.o.name,
            heartbeatIntervalMs: this.o.heartbeatIntervalMs ?? 5000,
          }),
          signal: AbortSignal.timeout(10_000),
        });
        const body = (await res.json().catch(() => ({}))) as {
          node?: { id: string };
          credential?: string;
          error?: { code: string; message: string };
        };
        if (res.ok && body.node && body.credential) {
          this.identity = { nodeId: body.node.id, credential: body.credential };
          this.saveIdentity();
          return;
        }
        const code = body.error?.code ?? "";
        error = `enrollment refused by ${hub}: HTTP ${res.status}${code ? ` ${code}` : ""}: ${body.error?.message ?? ""}`;
        // Refused for good: retrying cannot help (a rate limit or a hub-side failure can, after a pause).
        if (res.status >= 400 && res.status < 500 && res.status !== 429 && res.status !== 408) {
          const kind = code.startsWith("FLEETLINK_E_") ? code.slice(12) : "UNAUTHORIZED";
          throw new FleetlinkError(kind in ErrorCodes ? (kind as "UNAUTHORIZED") : "UNAUTHORIZED", error);
        }
      } catch (e) {
        if (isFleetlinkError(e)) throw e;
        const cause = (e as { cause?: { code?: string; message?: string } }).cause;
        error = `hub ${hub} unreachable for enrollment: ${describeError(e)}${cause ? ` (${cause.code ?? cause.message})` : ""}`;
      }
      this.feed.set({ state: "enrolling", hub, attempt, error });
      this.log.warn({ err: error, attempt }, "enrollment failed; retrying");
      this.hubIndex++;
      // A timer that keeps the process alive: a node waiting for its hub must not exit.
      await new Promise((r) => setTimeout(r, backoffDelay(Schedules.enroll, attempt)));
    }
  }

  private saveIdentity(): void {
    if (!this.o.identityFile) return;
    mkdirSync(dirname(this.o.identityFile), { recursive: true });
    writeFileSync(this.o.identityFile, JSON.stringify(this.identity), { mode: 0o600 });
    chmodSync(this.o.identityFile, 0o600); // `mode` applies only when the file is created
  }

  private connect(): void {
    if (this.stopping) return;
    const hub = this.hub();
    this.feed.set({ state: "connecting", hub, attempt: this.reconnects.attempts });
    const url = `${hub.replace(/^http/, "ws")}/v1/nodes/stream`;
    const nodeId = this.identity!.nodeId;
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${nodeId}.${this.identity!.credential}` },
      handshakeTimeout: 5000,
    });
    this.ws = ws;
    let failed = false;
    const fail = (reason: string, code: number = CloseCode.abnormal) => {
      if (failed) return;
      failed = true;
      this.onDisconnect(ws, reason, code);
    };
    ws.on("error", (e) => fail(e.message));
    ws.on("unexpected-response", (_req, res) => {
      // The refusal's body says why (pending approval, unregistered, bad credential); read a little of it.
      let body = "";
      res.on("data", (d: Buffer) => {
        if (body.length < 4096) body += d.toString();
      });
      res.on("error", () => {});
      let answered = false;
      const done = () => {
        if (answered) return; // "end" and "close" both come
        answered = true;
        let code = "";
        let message = "";
        try {
          ({ code, message } = (JSON.parse(body) as { error: { code: string; message: string } }).error);
        } catch {
          // not a fleetlink body
        }
        if (code === "FLEETLINK_E_NODE_PENDING") this.pendingApproval = true;
        if (code === "FLEETLINK_E_UNAUTHORIZED" || code === "FLEETLINK_E_NODE_UNREGISTERED")
          this.refused = `${hub} refuses node ${nodeId}: ${code}: ${truncate(message, 200)}`;
        fail(`hub answered ${res.statusCode}${code ? ` ${code}: ${truncate(message, 200)}` : ""}`);
        ws.terminate();
      };
      res.on("end", done);
      res.on("close", done);
    });
    ws.on("open", () => {
      const t = wsTransport(ws);
      watchTransport(this.liveness, t, (why) => this.log.warn({ why }, "hub path silent: reconnecting"));
      const ch = new Channel(t, {
        log: this.log,
        onRequest: (m, b) => this.onRequest(m, b),
      });
      ch.onClose((r, c) => fail(r, c));
      void this.hello(ch, hub);
    });
  }

  private async hello(ch: Channel, hub: string): Promise<void> {
    try {
      // Tell the hub what this node still works on (running, or replied but not yet acknowledged) so it
      // re-leases only what was really lost in flight.
      const inflight = [...new Set([...this.running.keys(), ...this.outbox.keys()])];
      const every = this.o.heartbeatIntervalMs ?? 5000;
      // The interval travels with hello and every heartbeat, so the hub judges this run of the node by it.
      const hello = (await ch.request(
        NodeMethods.hello,
        { inflight, heartbeatIntervalMs: every },
        { timeoutMs: 10_000 },
      )) as { maxPayloadBytes?: number; leaseMs?: number };
      if (!ch.isOpen) return;
      if (typeof hello?.maxPayloadBytes === "number") this.maxPayloadBytes = hello.maxPayloadBytes;
      this.channel = ch;
      this.reconnects.reset();
      this.pendingPolls.reset();
      this.feed.set({ state: "online", hub, nodeId: this.identity!.nodeId });
      clearInterval(this.heartbeatTimer);
      let beating = false;
      this.heartbeatTimer = setInterval(() => {
        if (beating) return; // never two heartbeats in flight
        beating = true;
        // Only silence means the path is dead (a blackhole does not close sockets): drop it and reconnect,
        // possibly to another replica. An error answer (the store had a blip) comes from a live hub: keep it.
        ch.request(NodeMethods.heartbeat, { heartbeatIntervalMs: every }, { timeoutMs: 2 * every })
          .catch((e: unknown) => {
            if (ch !== this.channel) return;
            if (isFleetlinkError(e, "STREAM_CLOSED") || isFleetlinkError(e, "NODE_UNREGISTERED"))
              this.dropConnection();
          })
          .finally(() => {
            beating = false;
          });
      }, every);
      this.startProgress(ch, hello?.leaseMs);
      for (const out of this.outbox.values()) this.send(out, true);
    } catch (e) {
      this.log.warn({ err: String(e) }, "hello failed");
      ch.close(CloseCode.internalError, "hello failed");
    }
  }

  /** The hub does not know this identity (database reset, node unregistered): re-enroll, or stop and say why. */
  private async onRefused(reason: string): Promise<void> {
    if (this.o.reenroll && this.o.enrollToken) {
      this.log.warn({ reason }, "identity refused: enrolling again as a new node");
      this.identity = undefined;
      try {
        await this.enroll();
        this.connect();
      } catch (e) {
        this.feed.set(
          { state: "rejected", reason: `${reason}; enrolling again failed: ${describeError(e)}` },
          true,
        );
      }
      return;
    }
    const file = this.o.identityFile ? ` remove ${this.o.identityFile} or` : "";
    this.feed.set(
      {
        state: "rejected",
        reason: `${reason} (was the hub's database reset?):${file} re-enroll with reenroll: true (fleetlink node --reenroll)`,
      },
      true,
    );
  }

  /**
   * While handlers run, tells the hub every third of a lease, so their leases are extended (like JetStream's
   * in-progress acks): a handler may run as long as its instruction's TTL allows without being redelivered.
   */
  private startProgress(ch: Channel, leaseMs: number | undefined): void {
    clearInterval(this.progressTimer);
    if (!leaseMs) return;
    this.progressTimer = setInterval(
      () => {
        if (ch !== this.channel || this.running.size === 0) return;
        ch.request(NodeMethods.progress, { ids: [...this.running.keys()] }, { timeoutMs: leaseMs / 3 }).catch(
          (e: unknown) => this.log.debug({ err: String(e) }, "progress report failed"),
        );
      },
      Math.max(100, Math.floor(leaseMs / 3)),
    );
  }

  private onDisconnect(ws: WebSocket, reason: string, code: number): void {
    if (this.ws !== ws) return; // a stale socket's late close changes nothing
    this.ws = null;
    this.channel = null;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.progressTimer);
    if (this.stopping) return;
    this.hubIndex++;
    if (this.refused) {
      const reason = this.refused;
      this.refused = undefined;
      void this.onRefused(reason);
      return;
    }
    if (this.pendingApproval) {
      // Waiting for an admin: poll gently, not as a reconnect storm.
      this.pendingApproval = false;
      const retryInMs = this.pendingPolls.next()!;
      this.feed.set({ state: "pending", nodeId: this.identity!.nodeId, retryInMs });
      this.reconnectTimer = setTimeout(() => this.connect(), retryInMs);
      return;
    }
    if (code === CloseCode.replaced) {
      // Our live stream was replaced by a newer one for the same node: another process runs with this
      // identity. Two such agents would replace each other forever; back off hard and say why.
      const retryInMs = this.replacements.next()!;
      const why = `another process is connected as node ${this.identity!.nodeId}${this.o.identityFile ? ` (identity ${this.o.identityFile})` : ""}: only one agent may use an identity`;
      this.log.warn({ retryInMs }, why);
      this.feed.set({ state: "offline", reason: `${reason}; ${why}`, retryInMs });
      this.reconnectTimer = setTimeout(() => this.connect(), retryInMs);
      return;
    }
    this.replacements.reset();
    const retryInMs = this.reconnects.next()!;
    this.feed.set({ state: "offline", reason, retryInMs });
    this.reconnectTimer = setTimeout(() => this.connect(), retryInMs);
  }

  private onRequest(method: string, body: unknown): unknown {
    if (method !== NodeMethods.instruction)
      throw new FleetlinkError("INVALID_ARGUMENT", `unknown method ${method}`, { field: "m" });
    if (this.stopping) throw new FleetlinkError("STREAM_CLOSED", "node is stopping");
    const ins = body as WireInstruction;
    const done = this.completed.get(ins.id);
    if (done) {
      // Redelivered after we replied: send the same reply again (the hub acknowledges the duplicate).
      this.queue(done);
    } else if (!this.running.has(ins.id) && !this.outbox.has(ins.id)) {
      const p = this.run(ins).finally(() => this.running.delete(ins.id));
      this.running.set(ins.id, p);
    }
    return { accepted: true };
  }

  private async run(ins: WireInstruction): Promise<void> {
    const handler = this.handlers[ins.method];
    let payload: unknown;
    let error: ReplyError | null = null;
    try {
      if (!handler)
        throw new FleetlinkError("INVALID_ARGUMENT", `no handler for method ${ins.method}`, {
          field: "method",
        });
      payload = await handler(ins.payload, {
        instructionId: ins.id,
        runId: ins.runId,
        method: ins.method,
        attempts: ins.attempts,
        nodeId: this.identity!.nodeId,
        signal: this.abort.signal,
      });
    } catch (e) {
      error = {
        code: isFleetlinkError(e) ? e.code : "FLEETLINK_E_HANDLER_FAILED",
        message: truncate(describeError(e), MAX_ERROR_MESSAGE_CHARS),
      };
      this.log.warn(
        { instruction: ins.id, method: ins.method, code: error.code, err: truncate(error.message, 256) },
        "handler failed",
      );
    }
    if (!error) ({ payload, error } = this.checkResult(payload));
    this.queue({ id: newId(), runId: ins.runId, replyTo: ins.id, payload: payload ?? null, error });
  }

  /**
   * A result that cannot travel becomes an error reply the coordinator sees (never a crash, never a reply
   * the hub refuses and the agent resends forever): JSON cannot encode it (a BigInt, a cycle), it nests too
   * deep, or it is larger than the hub's payload limit.
   */
  private checkResult(payload: unknown): { payload: unknown; error: ReplyError | null } {
    let bytes: number;
    try {
      bytes = Buffer.byteLength(JSON.stringify(payload ?? null));
    } catch (e) {
      return {
        payload: null,
        error: {
          code: "FLEETLINK_E_HANDLER_FAILED",
          message: `handler result cannot be encoded as JSON: ${truncate(describeError(e), 500)}`,
        },
      };
    }
    if (tooDeep(payload))
      return {
        payload: null,
        error: {
          code: "FLEETLINK_E_PAYLOAD_TOO_LARGE",
          message: `handler result nests deeper than ${MAX_JSON_DEPTH} levels`,
        },
      };
    if (bytes > this.maxPayloadBytes)
      return {
        payload: null,
        error: {
          code: "FLEETLINK_E_PAYLOAD_TOO_LARGE",
          message: `handler result of ${bytes} bytes exceeds the hub's payload limit of ${this.maxPayloadBytes}`,
        },
      };
    return { payload, error: null };
  }

  private queue(reply: WireReply): void {
    const prev = this.outbox.get(reply.replyTo);
    if (prev) return;
    const out: Outgoing = { reply, attempt: 0, sending: false };
    this.outbox.set(reply.replyTo, out);
    this.send(out, false);
  }

  /** Sends one reply; retried with backoff and jitter until a hub acknowledges it or refuses it for good. */
  private send(out: Outgoing, now: boolean): void {
    if (out.sending || !this.outbox.has(out.reply.replyTo)) return;
    if (now) clearTimeout(out.timer);
    const ch = this.channel;
    if (!ch?.isOpen) return; // sent again after the next hello
    out.sending = true;
    ch.request(NodeMethods.reply, out.reply, { timeoutMs: this.o.replyTimeoutMs ?? 5000 }).then(
      () => this.settle(out),
      (e: unknown) => {
        out.sending = false;
        if (isFleetlinkError(e) && e.definite) {
          this.log.warn({ err: e.message, instruction: out.reply.replyTo }, "reply refused");
          this.settle(out);
          return;
        }
        out.timer = setTimeout(() => this.send(out, false), backoffDelay(Schedules.reply, out.attempt++));
      },
    );
  }

  private settle(out: Outgoing): void {
    out.sending = false;
    clearTimeout(out.timer);
    this.outbox.delete(out.reply.replyTo);
    this.completed.set(out.reply.replyTo, out.reply);
    const keep = this.o.rememberCompleted ?? 10_000;
    while (this.completed.size > keep) this.completed.delete(this.completed.keys().next().value!);
    if (this.stopping) this.drained?.();
  }

  private drained: (() => void) | undefined;

  /**
   * Stops gracefully: takes no new instructions, lets running handlers finish and their replies be
   * acknowledged (up to `timeoutMs`), then disconnects.
   */
  async stop(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.feed.set({ state: "stopping" });
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    await Promise.race([Promise.allSettled([...this.running.values()]), sleep(deadline - Date.now())]);
    while (this.outbox.size > 0 && Date.now() < deadline && this.channel?.isOpen) {
      await Promise.race([
        new Promise<void>((r) => (this.drained = r)),
        sleep(Math.max(0, deadline - Date.now())),
      ]);
    }
    this.abort.abort("agent stopped");
    await this.checkpoints?.close();
    for (const p of this.o.plugins ?? []) await p.close?.();
    clearTimeout(this.reconnectTimer);
    clearInterval(this.heartbeatTimer);
    clearInterval(this.progressTimer);
    this.liveness.close();
    for (const out of this.outbox.values()) clearTimeout(out.timer);
    this.channel?.close(CloseCode.normal, "node stopping");
    this.ws?.terminate();
    this.feed.set({ state: "stopped" }, true);
  }

  /** Drops the connection now (tests and fault drills); the agent reconnects as after any failure. */
  dropConnection(): void {
    this.ws?.terminate();
  }
}

/**
 * A half-open path (a blackhole closes nothing) must be noticed well inside the node's online window
 * (2 × heartbeat interval from its last heartbeat), so the node has moved to another replica before the hub
 * gives up on it: a path silent for a quarter interval is pinged, one silent for half an interval is dropped.
 * Pings cost the store nothing (heartbeats are writes; pings are not).
 */
export const agentLiveness = (heartbeatIntervalMs: number): LivenessRule => ({
  probeAfterMs: Math.floor(heartbeatIntervalMs / 4),
  dropAfterMs: Math.floor(heartbeatIntervalMs / 2),
  checkMs: Math.max(25, Math.floor(heartbeatIntervalMs / 8)),
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)).unref?.());
