import type { Hub } from "../hub/server.ts";
import type { Transport } from "../stream/transport.ts";

/** One thing seen on a node's connection at the hub: a frame either way, or the connection's end. */
export type TapEvent =
  | {
      at: number;
      replica: number;
      conn: number;
      nodeId: string;
      dir: "in" | "out";
      frame: { t: string; id?: string; m?: string; b?: unknown };
    }
  | {
      at: number;
      replica: number;
      conn: number;
      nodeId: string;
      dir: "close";
      code: number;
      by: "hub" | "peer";
    };

/** Most events kept; a run of the kit sees a few thousand. */
const MAX_EVENTS = 200_000;

/**
 * Records every frame between the hub and the node under test, at the hub, whatever the transport: it wraps
 * the transport each connection hands to `NodeStreams.accept` (the WebSocket and the HTTP node API share
 * that entry), so the kit sees what the node said (hellos, acknowledgements, reply ids, leave) and how the
 * hub ended each connection, without decoding anything on the wire.
 */
export class FrameTap {
  readonly events: TapEvent[] = [];
  private conns = 0;
  /** Instruction ids whose `progress` the tap keeps from the hub (see holdProgress). */
  private readonly held = new Set<string>();

  /**
   * From now on the node's `progress` for `id` never reaches the hub: the tap takes the id out of each progress
   * request and answers a request left empty itself (`{extended: []}`), so the lease runs out while the node
   * stays connected and the hub delivers the instruction again. Undone by releaseProgress.
   */
  holdProgress(id: string): void {
    this.held.add(id);
  }

  /** Progress for `id` (every id, without one) reaches the hub again. */
  releaseProgress(id?: string): void {
    if (id === undefined) this.held.clear();
    else this.held.delete(id);
  }

  /** The progress frame to pass on (ids held taken out), or undefined when the tap answered it itself. */
  private filterProgress(t: Transport, text: string): string | undefined {
    if (this.held.size === 0) return text;
    let f: { t?: string; id?: string; m?: string; b?: { ids?: unknown } };
    try {
      f = JSON.parse(text);
    } catch {
      return text;
    }
    const ids = f.b?.ids;
    if (f.t !== "req" || f.m !== "progress" || !Array.isArray(ids) || !ids.some((i) => this.held.has(i)))
      return text;
    const rest = ids.filter((i) => !this.held.has(i));
    if (rest.length > 0) return JSON.stringify({ ...f, b: { ...f.b, ids: rest } });
    t.send(JSON.stringify({ t: "res", id: f.id, b: { extended: [] } }));
    return undefined;
  }

  /** Taps every node connection `hub` (replica number `replica`) accepts from now on. */
  attach(hub: Hub, replica: number): void {
    const nodes = hub.nodes;
    const accept = nodes.accept.bind(nodes);
    nodes.accept = (node, transport) => accept(node, this.wrap(transport, replica, node.id));
  }

  private record(e: TapEvent): void {
    if (this.events.length < MAX_EVENTS) this.events.push(e);
  }

  private wrap(t: Transport, replica: number, nodeId: string): Transport {
    const conn = ++this.conns;
    const frame = (dir: "in" | "out", text: string) => {
      try {
        this.record({ at: Date.now(), replica, conn, nodeId, dir, frame: JSON.parse(text) });
      } catch {
        // Not JSON: the channel refuses it; nothing for the kit to learn.
      }
    };
    let closedByHub = false;
    t.onClose((code) =>
      this.record({
        at: Date.now(),
        replica,
        conn,
        nodeId,
        dir: "close",
        code,
        by: closedByHub ? "hub" : "peer",
      }),
    );
    const w: Transport = {
      send: (f) => {
        frame("out", f);
        t.send(f);
      },
      close: (code, reason) => {
        closedByHub = true;
        t.close(code, reason);
      },
      onMessage: (cb) =>
        t.onMessage((f) => {
          frame("in", f);
          const pass = this.filterProgress(t, f);
          if (pass !== undefined) cb(pass);
        }),
      onClose: (cb) => t.onClose(cb),
      get isOpen() {
        return t.isOpen;
      },
    };
    if (t.ping) w.ping = () => t.ping!();
    if (t.onAlive) w.onAlive = (cb) => t.onAlive!(cb);
    if (t.terminate)
      w.terminate = () => {
        closedByHub = true;
        t.terminate!();
      };
    return w;
  }

  /** Frames the node sent with this method (a request), oldest first. */
  requests(method: string, since = 0, nodeId?: string): (TapEvent & { dir: "in" })[] {
    return this.events.filter(
      (e): e is TapEvent & { dir: "in" } =>
        e.dir === "in" &&
        e.frame.t === "req" &&
        e.frame.m === method &&
        e.at >= since &&
        (nodeId === undefined || e.nodeId === nodeId),
    );
  }

  /**
   * Each delivery of this instruction (the hub's `instruction` request) and when the node acknowledged it; an
   * `instructions` event (the node asked for them in hello) needs no acknowledgement and counts as one at once.
   */
  deliveries(instructionId: string): { at: number; conn: number; ackedAt?: number; refused?: boolean }[] {
    const out: { at: number; conn: number; frameId: string; ackedAt?: number; refused?: boolean }[] = [];
    for (const e of this.events) {
      if (e.dir === "out" && e.frame.t === "req" && e.frame.m === "instruction") {
        if ((e.frame.b as { id?: string } | undefined)?.id === instructionId)
          out.push({ at: e.at, conn: e.conn, frameId: e.frame.id! });
      } else if (e.dir === "out" && e.frame.t === "evt" && e.frame.m === "instructions") {
        const items = (e.frame.b as { items?: { id?: string }[] } | undefined)?.items ?? [];
        if (items.some((i) => i.id === instructionId))
          out.push({ at: e.at, conn: e.conn, frameId: "", ackedAt: e.at });
      } else if (e.dir === "in" && (e.frame.t === "res" || e.frame.t === "err")) {
        const d = out.find((x) => x.frameId === e.frame.id && x.conn === e.conn && x.ackedAt === undefined);
        if (d) {
          d.ackedAt = e.at;
          d.refused = e.frame.t === "err";
        }
      }
    }
    return out;
  }

  /** The reply ids the node sent for this instruction, in order (a resend repeats one). */
  replyIds(instructionId: string): string[] {
    return this.requests("reply")
      .filter((e) => (e.frame.b as { replyTo?: string } | undefined)?.replyTo === instructionId)
      .map((e) => String((e.frame.b as { id?: unknown }).id));
  }

  /** Events (`evt` frames) the hub sent to this node with this method, oldest first. */
  sentEvents(method: string, nodeId: string): (TapEvent & { dir: "out" })[] {
    return this.events.filter(
      (e): e is TapEvent & { dir: "out" } =>
        e.dir === "out" && e.nodeId === nodeId && e.frame.t === "evt" && e.frame.m === method,
    );
  }

  /** Connections of this node the hub closed, with the code, since `since`. */
  closes(nodeId: string, since = 0): (TapEvent & { dir: "close" })[] {
    return this.events.filter(
      (e): e is TapEvent & { dir: "close" } => e.dir === "close" && e.nodeId === nodeId && e.at >= since,
    );
  }
}
