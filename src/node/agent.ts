import https from "node:https";
import { BlobClient, BlobTransfers } from "../blob/client.ts";
import { checkBlobOptions } from "../blob/codec.ts";
import { DEFAULT_INLINE_BYTES } from "../protocol/blobs.ts";
import { CloseCode } from "../protocol/close-codes.ts";
import {
  describeError,
  ErrorCodes,
  type ErrorName,
  FleetlinkError,
  isFleetlinkError,
} from "../protocol/errors.ts";
import { DEFAULT_MAX_PAYLOAD_BYTES } from "../protocol/limits.ts";
import { PROTOCOL_VERSION, TS_AGENT_NAME } from "../protocol/version.ts";
import { NodeMethods, type WireInstruction } from "../protocol/wire.ts";
import { type Channel, type Logger, silentLogger } from "../stream/channel.ts";
import { checkClientTls, clientTlsOptions } from "../stream/client-tls.ts";
import { type Connector, Dialer, type DialerStatus, type Loss, type Plan } from "../stream/dialer.ts";
import { httpConnector } from "../stream/http-dial.ts";
import { StatusFeed } from "../stream/status-feed.ts";
import { DialRefused, wsConnector } from "../stream/ws-dial.ts";
import { Backoff } from "../util/backoff.ts";
import { packageVersion } from "../util/package-version.ts";
import { withBlobs } from "./blobs.ts";
import { enroll, loadIdentity, type NodeIdentity, saveIdentity } from "./enroll.ts";
import { Executor } from "./executor.ts";
import type { Handler } from "./handler.ts";
import { checkIdentityName, IdentityConflicts, SETTLED_MS } from "./identity-guard.ts";
import type { NodeAgentOptions } from "./options.ts";
import { Outbox } from "./outbox.ts";
import type { AgentPluginHost } from "./plugin.ts";
import { agentLiveness, heartbeatAnswerMs, httpLiveness, Schedules } from "./schedules.ts";
import type { AgentStatus } from "./status.ts";

export type { NodeIdentity } from "./enroll.ts";
export type { Handler, HandlerContext } from "./handler.ts";
export type { NodeAgentOptions } from "./options.ts";
export { agentLiveness } from "./schedules.ts";

/** Upgrade refusals that mean the hub does not know this identity (as opposed to "not yet" or "not now"). */
const REFUSED_FOR_GOOD = new Set(["FLEETLINK_E_UNAUTHORIZED", "FLEETLINK_E_NODE_UNREGISTERED"]);

/**
 * A fleet node: dials out to a hub replica, receives the instructions pushed to it, runs their handlers and
 * replies, retrying each reply until a hub acknowledges it (across reconnects and replicas). The connection is
 * the shared dialer (stream/dialer.ts); this class holds the node's policy for it, the executor runs the
 * handlers and the outbox carries the replies.
 */
export class NodeAgent {
  private readonly o: NodeAgentOptions;
  private readonly feed = new StatusFeed<AgentStatus>({ state: "idle" });
  private identity: NodeIdentity | undefined;
  private channel: Channel | null = null;
  private stopping = false;
  private readonly outbox: Outbox;
  private readonly executor: Executor;
  private readonly dialer: Dialer;
  /** Ends the connectors' kept-alive sockets once the agent stopped. */
  private readonly closeConnectors: () => void;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private progressTimer: ReturnType<typeof setInterval> | undefined;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private readonly every: number;
  private readonly pendingPolls = new Backoff(Schedules.pending);
  /** Times in a row our live stream was replaced by another process's (a shared identity). */
  private readonly replacements = new Backoff(Schedules.replaced);
  /** Replacements in a row by another process on this identity (towards maxConflicts). */
  private readonly conflicts: IdentityConflicts;
  /** Why the hub's answer to hello ended it for good: the node has another name there. */
  private nameRefusal: string | undefined;
  /** The agent status to show while the dialer waits after a loss (set by the loss policy). */
  private waiting: { pending: boolean; note?: string } = { pending: false };
  /** The hub's payload limit, learned at hello. */
  private maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES;
  /** The hub's lease, learned at hello: progress is reported every third of it. */
  private leaseMs: number | undefined;
  /** The optional protocol parts the hub announced at hello (undefined: a hub older than versioning). */
  private features: readonly string[] | undefined;
  /** The hub's refusal of our protocol version, from the hello's error (the close code 4002 follows it). */
  private protocolRefusal: string | undefined;
  private readonly handlers: Record<string, Handler>;
  /** The hub of the live connection, where blob transfers go. */
  private liveHub: string | undefined;
  private readonly blobTransfers: BlobTransfers;
  /** The transport of the connection being dialled: instructions come as events only on a WebSocket. */
  private dialing: "ws" | "http" = "ws";

  constructor(o: NodeAgentOptions) {
    if (o.hubs.length === 0)
      throw new FleetlinkError("INVALID_ARGUMENT", "hubs: at least one hub URL", { field: "hubs" });
    // Options of earlier versions, now the nodeCheckpoints plug-in: refused rather than silently ignored.
    for (const key of ["state", "checkpointStore", "standby"])
      if (key in o)
        throw new FleetlinkError(
          "INVALID_ARGUMENT",
          `${key}: checkpoints are a plug-in now: plugins: [nodeCheckpoints({ state, objects, standby })]`,
          { field: key },
        );
    checkClientTls(o.tls);
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
    this.log = o.log ?? silentLogger;
    this.every = o.heartbeatIntervalMs ?? 5000;
    this.conflicts = new IdentityConflicts(o.maxConflicts ?? 3, o.conflictSettleMs ?? SETTLED_MS);
    this.identity = o.identity ?? (o.identityFile ? loadIdentity(o.identityFile) : undefined);
    checkIdentityName(this.identity, o.name, o.identity ? undefined : o.identityFile);
    this.outbox = new Outbox({
      channel: () => this.channel,
      timeoutMs: o.replyTimeoutMs ?? 5000,
      retry: Schedules.reply,
      remember: o.rememberCompleted ?? 10_000,
      log: this.log,
    });
    this.executor = new Executor({
      handlers: this.handlers,
      outbox: this.outbox,
      nodeId: () => this.identity!.nodeId,
      maxPayloadBytes: () => this.maxPayloadBytes,
      signal: this.abort.signal,
      log: this.log,
    });
    const hubs = o.hubs.map((h) => h.replace(/\/$/, ""));
    const headers = () => ({ authorization: `Bearer ${this.identity!.nodeId}.${this.identity!.credential}` });
    const http = httpConnector({ headers, liveness: httpLiveness(this.every), tls: o.tls });
    this.closeConnectors = () => http.close();
    checkBlobOptions(o);
    this.blobTransfers = new BlobTransfers({
      inlineBytes: o.inlineBytes ?? DEFAULT_INLINE_BYTES,
      cacheDir: o.blobCacheDir,
      cacheBytes: o.blobCacheBytes,
    });
    // Blob transfers to the hub present the client certificate too (presigned URLs go elsewhere: harmless).
    if (o.tls) {
      this.blobTransfers.agents.https.destroy();
      this.blobTransfers.agents.https = new https.Agent({ keepAlive: true, ...clientTlsOptions(o.tls) });
    }
    const blobs = new BlobClient(
      {
        hub: () => this.liveHub ?? hubs[0]!,
        headers,
        prefix: "/v1/node/blobs",
        presigned: () => this.features?.includes("blob-urls") ?? false,
      },
      this.blobTransfers,
    );
    for (const [method, h] of Object.entries(this.handlers))
      this.handlers[method] = withBlobs(h, blobs, o.blobs ?? "bytes");
    const connectors: Record<"ws" | "http", Connector> = {
      ws: wsConnector({
        url: (hub) => `${hub}/v1/nodes/stream`,
        headers,
        handshakeTimeoutMs: 5000,
        tls: o.tls,
      }),
      http,
    };
    const transport = o.transport ?? "ws";
    this.dialer = new Dialer({
      hubs,
      connect: (hub) => {
        this.dialing = typeof transport === "function" ? transport() : transport;
        return connectors[this.dialing](hub);
      },
      liveness: agentLiveness(this.every),
      backoff: Schedules.reconnect,
      channel: {
        log: this.log,
        onRequest: (m, b) => this.onRequest(m, b),
        onEvent: (m, b) => this.onEvent(m, b),
      },
      hello: (ch) => this.hello(ch),
      onLive: (ch, hub) => this.onLive(ch, hub),
      onLost: (loss) => this.onLost(loss),
      onStatus: (s) => this.onDialer(s),
    });
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

  /** The shared dialer's own status (dialing, hello, live, lost, stopped), for applications that want it raw. */
  get connection(): DialerStatus {
    return this.dialer.status;
  }

  /** Enrolls if needed and starts connecting; resolves once the first connection is online. */
  async start(): Promise<void> {
    if (!this.identity) await this.enroll();
    for (const p of this.o.plugins ?? []) p.start?.(this.pluginHost);
    this.dialer.start();
    for await (const s of this.status()) {
      if (s.state === "online") return;
      if (s.state === "stopped")
        throw new FleetlinkError("STREAM_CLOSED", "agent stopped before it came online");
      if (s.state === "rejected")
        throw new FleetlinkError(
          this.protocolRefusal ? "UNSUPPORTED_PROTOCOL" : (errorKind(s.code) ?? "UNAUTHORIZED"),
          s.reason,
        );
    }
  }

  private async enroll(): Promise<void> {
    if (!this.o.enrollToken)
      throw new FleetlinkError("UNAUTHORIZED", "no identity and no enrollToken to enroll with", {
        field: "enrollToken",
      });
    this.identity = await enroll({
      hubs: this.o.hubs.map((h) => h.replace(/\/$/, "")),
      name: this.o.name,
      enrollToken: this.o.enrollToken,
      heartbeatIntervalMs: this.every,
      tls: this.o.tls,
      retry: Schedules.enroll,
      stopping: () => this.stopping,
      onRetry: (s, error) => {
        this.feed.set(s);
        this.log.warn({ err: error, attempt: s.attempt }, "enrollment failed; retrying");
      },
    });
    if (this.o.identityFile) saveIdentity(this.o.identityFile, this.identity);
  }

  private onDialer(s: DialerStatus): void {
    if (s.state === "dialing") this.feed.set({ state: "connecting", hub: s.hub, attempt: s.attempt });
    else if (s.state === "lost") {
      const w = this.waiting;
      if (w.pending)
        this.feed.set({ state: "pending", nodeId: this.identity!.nodeId, retryInMs: s.retryInMs });
      else
        this.feed.set({
          state: "offline",
          reason: w.note ? `${s.reason}; ${w.note}` : s.reason,
          retryInMs: s.retryInMs,
        });
    }
  }

  private async hello(ch: Channel): Promise<void> {
    try {
      // Tell the hub what this node still works on (running, or replied but not yet acknowledged) so it
      // re-leases only what was really lost in flight.
      const inflight = [...new Set([...this.executor.workingIds(), ...this.outbox.keys()])];
      // The interval travels with hello and every heartbeat, so the hub judges this run of the node by it.
      const hello = (await ch.request(
        NodeMethods.hello,
        {
          inflight,
          heartbeatIntervalMs: this.every,
          protocol: PROTOCOL_VERSION,
          agent: { name: TS_AGENT_NAME, version: packageVersion() },
          // Over HTTP, instructions come in poll answers and are acknowledged by the next poll.
          ...(this.dialing === "ws" ? { features: ["instructions"] } : {}),
        },
        { timeoutMs: 10_000 },
      )) as { name?: unknown; maxPayloadBytes?: number; leaseMs?: number; features?: string[] };
      // An identity file of an older agent does not say its node's name: the hub does.
      if (typeof hello?.name === "string" && hello.name !== this.o.name) {
        try {
          checkIdentityName(
            { nodeId: this.identity!.nodeId, name: hello.name },
            this.o.name,
            this.o.identityFile,
          );
        } catch (e) {
          this.nameRefusal = describeError(e);
          // The hello made this stream the node's session: leave, so the hub shows the node offline at once
          // rather than after its heartbeat window (a hub without `leave` times it out).
          if (Array.isArray(hello.features) && hello.features.includes("leave"))
            await ch.request(NodeMethods.leave, {}, { timeoutMs: 2000 }).catch(() => {});
          ch.close(CloseCode.normal, "node name mismatch");
          throw e;
        }
      }
      if (typeof hello?.maxPayloadBytes === "number") this.maxPayloadBytes = hello.maxPayloadBytes;
      this.leaseMs = hello?.leaseMs;
      this.features = Array.isArray(hello?.features) ? hello.features : undefined;
    } catch (e) {
      this.log.warn({ err: String(e) }, "hello failed");
      if (isFleetlinkError(e, "UNSUPPORTED_PROTOCOL")) {
        // Close with the hub's code ourselves, so the loss policy sees 4002 whichever close arrives first.
        this.protocolRefusal = describeError(e);
        ch.close(CloseCode.unsupportedProtocol, "protocol refused");
      }
      throw e;
    }
  }

  private onLive(ch: Channel, hub: string): void {
    this.channel = ch;
    this.liveHub = hub;
    this.conflicts.live();
    this.pendingPolls.reset();
    this.feed.set({ state: "online", hub, nodeId: this.identity!.nodeId });
    const every = this.every;
    clearInterval(this.heartbeatTimer);
    let beating = false;
    this.heartbeatTimer = setInterval(() => {
      if (beating) return; // never two heartbeats in flight
      beating = true;
      // Unanswered for a moment: probed, so a dead path is dropped in time however busy it was (schedules.ts).
      const late = setTimeout(() => {
        if (ch === this.channel) this.dialer.probe(heartbeatAnswerMs(every));
      }, heartbeatAnswerMs(every));
      // Only silence means the path is dead (a blackhole does not close sockets): drop it and reconnect,
      // possibly to another replica. An error answer (the store had a blip) comes from a live hub: keep it.
      ch.request(NodeMethods.heartbeat, { heartbeatIntervalMs: every }, { timeoutMs: 2 * every })
        .catch((e: unknown) => {
          if (ch !== this.channel) return;
          if (isFleetlinkError(e, "STREAM_CLOSED") || isFleetlinkError(e, "NODE_UNREGISTERED"))
            this.dialer.drop(`heartbeat failed: ${describeError(e)}`);
        })
        .finally(() => {
          clearTimeout(late);
          beating = false;
        });
    }, every);
    this.startProgress(ch, this.leaseMs);
    this.outbox.flush();
  }

  /** The policy after a lost stream, by close code and upgrade refusal. */
  private onLost(loss: Loss): Plan {
    if (loss.wasLive) this.log.warn({ hub: loss.hub, code: loss.code, why: loss.reason }, "hub stream lost");
    this.channel = null;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.progressTimer);
    this.waiting = { pending: false };
    if (this.stopping) return { stop: "node stopping" };
    if (this.nameRefusal) {
      this.log.warn({ hub: loss.hub }, this.nameRefusal);
      this.feed.set(
        { state: "rejected", reason: this.nameRefusal, code: "FLEETLINK_E_INVALID_ARGUMENT" },
        true,
      );
      return { stop: this.nameRefusal };
    }
    if (loss.code === CloseCode.unsupportedProtocol) {
      // Dialing again with the same version is refused again, by any replica of that hub: stop and say why.
      const why = `${loss.hub} refuses this node's protocol ${PROTOCOL_VERSION} (${TS_AGENT_NAME} ${packageVersion()}): ${this.protocolRefusal ?? loss.reason}`;
      this.log.warn({ hub: loss.hub }, why);
      this.feed.set({ state: "rejected", reason: why }, true);
      return { stop: why };
    }
    const refusal = loss.error instanceof DialRefused ? loss.error : undefined;
    if (refusal?.field === "clientCertificate") {
      // Missing, expired, foreign or bound to another node: every dial presents the same certificate, so
      // retrying cannot help, and enrolling again would not change it either. Stop and say why.
      const why = `${loss.hub} refuses this node's client certificate: ${refusal.code}: ${refusal.detail} (check the agent's tls.cert/tls.key, fleetlink node --cert/--key, against the hub's --client-ca)`;
      this.log.warn({ hub: loss.hub }, why);
      this.feed.set({ state: "rejected", reason: why }, true);
      return { stop: why };
    }
    if (refusal && REFUSED_FOR_GOOD.has(refusal.code)) {
      // The hub does not know this identity (database reset, node unregistered): re-enroll, or stop and say why.
      const why = `${loss.hub} refuses node ${this.identity!.nodeId}: ${refusal.code}: ${refusal.detail}`;
      void this.onRefused(why);
      return { stop: why };
    }
    if (refusal?.code === "FLEETLINK_E_NODE_PENDING") {
      // Waiting for an admin: poll gently, not as a reconnect storm.
      this.waiting = { pending: true };
      return { retryInMs: this.pendingPolls.next() };
    }
    if (loss.code === CloseCode.replaced) {
      // Our stream was replaced by a newer one for the same node: another process runs with this identity.
      // Never our own reconnect: the dialer drops a connection before it dials the next, and ignores whatever
      // the dropped one says afterwards (its generation is over), so the hub's replaced close of a stream we
      // left after a network blip never reaches this policy.
      // Two such agents would replace each other forever; back off hard, say why, and give up after a few.
      const c = this.conflicts.replaced(loss.wasLive);
      if (c.settled) this.replacements.reset();
      const max = this.conflicts.max;
      const who = `another process is connected as node ${this.identity!.nodeId}${this.o.identityFile ? ` (identity ${this.o.identityFile})` : ""}`;
      if (c.giveUp) {
        const why = `${who}: replaced ${c.count} times in a row, giving the identity up to it. Only one agent may use an identity: stop the other one, or give this one its own --identity file (a new node)`;
        this.log.warn({ conflicts: c.count }, why);
        this.feed.set({ state: "rejected", reason: why, code: "FLEETLINK_E_CONFLICT" }, true);
        return { stop: why };
      }
      const retryInMs = this.replacements.next();
      const why = `${who}: only one agent may use an identity (replaced ${c.count} of ${max} times in a row before this agent gives up)`;
      this.log.warn({ retryInMs }, why);
      this.waiting = { pending: false, note: why };
      return { retryInMs };
    }
    this.replacements.reset();
    this.conflicts.reset();
    return {};
  }

  /** The hub does not know this identity (database reset, node unregistered): re-enroll, or stop and say why. */
  private async onRefused(reason: string): Promise<void> {
    if (this.o.reenroll && this.o.enrollToken) {
      this.log.warn({ reason }, "identity refused: enrolling again as a new node");
      this.identity = undefined;
      try {
        await this.enroll();
        this.dialer.start();
      } catch (e) {
        this.feed.set(
          { state: "rejected", reason: `${reason}; enrolling again failed: ${describeError(e)}` },
          true,
        );
      }
      return;
    }
    const file = this.o.identityFile ? ` remove ${this.o.identityFile} or` : "";
    const why = /NODE_UNREGISTERED|unregistered/.test(reason)
      ? "an admin unregistered this node"
      : "the hub does not know this identity: was its database reset, or is the identity another hub's?";
    this.feed.set(
      {
        state: "rejected",
        reason: `${reason} (${why}): to join as a new node,${file} enroll again with --reenroll (SDK: reenroll: true)`,
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
        // Cancelled handlers still running are left out: their instructions ended.
        const ids = this.executor.workingIds();
        if (ch !== this.channel || ids.length === 0) return;
        ch.request(NodeMethods.progress, { ids }, { timeoutMs: leaseMs / 3 }).catch((e: unknown) =>
          this.log.debug({ err: String(e) }, "progress report failed"),
        );
      },
      Math.max(100, Math.floor(leaseMs / 3)),
    );
  }

  /**
   * One-way messages from the hub: `instructions` (delivered to us, as asked in hello) and `cancel`
   * (instructions that ended before their reply). Others are ignored.
   */
  private onEvent(method: string, body: unknown): void {
    if (method === NodeMethods.instructions) {
      const items = (body as { items?: unknown } | null)?.items;
      // Not run while stopping: the stream's end gives their leases back, as a refused request did.
      if (!Array.isArray(items) || this.stopping) return;
      for (const ins of items) this.executor.accept(ins as WireInstruction);
      return;
    }
    if (method !== NodeMethods.cancel) return;
    const b = body as { ids?: unknown; code?: unknown } | null;
    if (!Array.isArray(b?.ids) || typeof b.code !== "string") {
      this.log.warn({ method }, "malformed cancel event ignored");
      return;
    }
    this.executor.cancel(
      b.ids.filter((id): id is string => typeof id === "string"),
      b.code,
    );
  }

  private onRequest(method: string, body: unknown): unknown {
    if (method !== NodeMethods.instruction)
      throw new FleetlinkError("INVALID_ARGUMENT", `unknown method ${method}`, { field: "m" });
    if (this.stopping) throw new FleetlinkError("STREAM_CLOSED", "node is stopping");
    this.executor.accept(body as WireInstruction);
    return { accepted: true };
  }

  /**
   * Stops gracefully: takes no new instructions, lets running handlers finish and their replies be
   * acknowledged (up to `timeoutMs`), says `leave` (the hub marks the node offline at once; waits at most
   * 2 s for its answer), then disconnects.
   */
  async stop(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.feed.set({ state: "stopping" });
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    await Promise.race([this.executor.settled(), sleep(deadline - Date.now())]);
    if (this.channel?.isOpen)
      await Promise.race([this.outbox.drained(), sleep(Math.max(0, deadline - Date.now()))]);
    clearInterval(this.heartbeatTimer);
    clearInterval(this.progressTimer);
    const ch = this.channel;
    if (ch?.isOpen && this.features?.includes("leave"))
      await ch
        .request(NodeMethods.leave, {}, { timeoutMs: 2000 })
        .catch((e: unknown) => this.log.debug({ err: String(e) }, "leave failed; the hub will time us out"));
    this.abort.abort("agent stopped");
    for (const p of this.o.plugins ?? []) await p.close?.();
    clearInterval(this.heartbeatTimer);
    clearInterval(this.progressTimer);
    this.outbox.close();
    this.dialer.stop("node stopping");
    this.closeConnectors();
    this.blobTransfers.close();
    this.feed.set({ state: "stopped" }, true);
  }

  /** Drops the connection now (tests and fault drills); the agent reconnects as after any failure. */
  dropConnection(): void {
    this.dialer.drop("connection dropped");
  }
}

/** The error kind of a status's code (`FLEETLINK_E_CONFLICT` → `CONFLICT`), if it is one. */
const errorKind = (code: string | undefined): ErrorName | undefined => {
  const kind = code?.replace(/^FLEETLINK_E_/, "");
  return kind && Object.hasOwn(ErrorCodes, kind) ? (kind as ErrorName) : undefined;
};

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)).unref?.());
