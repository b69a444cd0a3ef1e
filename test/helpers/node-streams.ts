// NodeStreams over memoryPair: a hub's node side with no socket, and fake nodes that speak the stream protocol.
import { NodeStreams } from "../../src/hub/delivery/node-streams.ts";
import type { NodeRecord, Reply } from "../../src/protocol/types.ts";
import type { WireInstruction } from "../../src/protocol/wire.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store, StoreOptions } from "../../src/store/store.ts";
import { Channel, silentLogger } from "../../src/stream/channel.ts";
import { type MemoryTransport, memoryPair } from "../../src/stream/transport.ts";

export interface FakeNode {
  node: NodeRecord;
  ch: Channel;
  transport: MemoryTransport;
  instructions: WireInstruction[];
  /** Frames that carried instructions: `instruction` requests, or `instructions` events (`events: true`). */
  frames: number;
  closed: Promise<number>;
}

export const nodeStreams = async (
  o: { maxInflight?: number; helloTimeoutMs?: number; store?: StoreOptions } = {},
) => {
  const store: Store = await openStore("memory:", o.store);
  const replies: (Reply | undefined)[] = [];
  const streams = new NodeStreams({
    store,
    maxInflight: o.maxInflight ?? 32,
    deliveryTimeoutMs: 1000,
    helloTimeoutMs: o.helloTimeoutMs,
    log: silentLogger,
    onReply: (r) => replies.push(r),
  });
  /**
   * A node's stream, served by the hub side; `hello` (default) says hello first, asking for `instructions`
   * events with `events`; `polled` makes the hub's side look like an HTTP node session.
   */
  const connect = async (
    node: NodeRecord,
    hello = true,
    events = false,
    polled = false,
  ): Promise<FakeNode> => {
    const [mine, hubs] = memoryPair();
    // As an HTTP node session is: its polls carry instruction requests.
    if (polled) Object.assign(hubs, { polled: true });
    const closed = new Promise<number>((r) => mine.onClose((c) => r(c)));
    const fake = { node, transport: mine, instructions: [] as WireInstruction[], frames: 0, closed };
    const ch = new Channel(mine, {
      onRequest: (_m, b) => {
        fake.frames++;
        fake.instructions.push(b as WireInstruction);
        return { accepted: true };
      },
      onEvent: (m, b) => {
        if (m !== "instructions") return;
        fake.frames++;
        fake.instructions.push(...(b as { items: WireInstruction[] }).items);
      },
    });
    streams.accept(node, hubs);
    if (hello)
      await ch.request("hello", {
        inflight: [],
        heartbeatIntervalMs: 1000,
        ...(events ? { features: ["instructions"] } : {}),
      });
    return Object.assign(fake, { ch });
  };
  const register = (name: string) => store.registerNode({ name, heartbeatIntervalMs: 1000 });
  return { store, streams, replies, connect, register };
};

export const until = async (cond: () => boolean, ms = 2000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
};
