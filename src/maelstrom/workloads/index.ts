import { MaelstromNode } from "../node.ts";
import { RPCError } from "../protocol.ts";
import type { WorkloadName } from "./names.ts";
import { ReplicatedSet, type ReplicatedSetOptions } from "./replicated-set.ts";

/** echo: replies with what it was sent. */
export const echo = (node: MaelstromNode) =>
  node.on("echo", (m) => {
    const { msg_id: _, ...rest } = m.body;
    node.reply(m, { ...rest, type: "echo_ok" });
  });

/** unique-ids: node id + a per-node counter is unique across the cluster without coordination. */
export const uniqueIds = (node: MaelstromNode) => {
  let n = 0;
  node.on("generate", (m) => node.reply(m, { type: "generate_ok", id: `${node.id}-${n++}` }));
};

/** g-set: a grow-only set of arbitrary JSON elements. */
export const gSet = (node: MaelstromNode, o?: ReplicatedSetOptions) => {
  const set = new ReplicatedSet<unknown>(node, (v) => JSON.stringify(v), o);
  void node.initialized().then(() => set.start());
  node.on("add", (m) => {
    if (!("element" in m.body)) throw RPCError.of("malformed-request", "add needs element");
    set.add(m.body.element);
    node.reply(m, { type: "add_ok" });
  });
  node.on("read", (m) => node.reply(m, { type: "read_ok", value: [...set.values.values()] }));
};

/**
 * broadcast: acknowledges at once (duplicates too), replicates over a batched star (the `topology` message is
 * acknowledged and ignored: the star beats the suggested grid on messages per operation).
 */
export const broadcast = (node: MaelstromNode, o?: ReplicatedSetOptions) => {
  const set = new ReplicatedSet<number>(node, String, o);
  void node.initialized().then(() => set.start());
  node.on("broadcast", (m) => {
    if (typeof m.body.message !== "number")
      throw RPCError.of("malformed-request", "broadcast needs a numeric message");
    set.add(m.body.message);
    node.reply(m, { type: "broadcast_ok" });
  });
  node.on("read", (m) => node.reply(m, { type: "read_ok", messages: [...set.values.values()] }));
  node.on("topology", (m) => node.reply(m, { type: "topology_ok" }));
};

export const workloads = {
  echo,
  "unique-ids": uniqueIds,
  "g-set": gSet,
  broadcast,
} as const satisfies Record<WorkloadName, unknown>;
export type { WorkloadName };

/** Runs one workload on stdin/stdout (what `fleetlink maelstrom node <workload>` does). */
export const runWorkload = async (name: WorkloadName, o?: ReplicatedSetOptions): Promise<void> => {
  const node = new MaelstromNode();
  (workloads[name] as (n: MaelstromNode, o?: ReplicatedSetOptions) => unknown)(node, o);
  await node.run();
};
