import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { type NodeState, nodeCheckpoints, type StandbyOptions } from "../../src/checkpoint/node-side.ts";
import { type ObjectStore, readAll } from "../../src/checkpoint/object-store.ts";
import type { HubOptions } from "../../src/hub/server.ts";
import type { Handler, NodeAgentOptions } from "../../src/node/agent.ts";
import { startFleet } from "./fleet.ts";

export type Box = { data: Uint8Array };

/** Node state of `bytes` random bytes in `box`; a restore replaces them. */
export const memState = (bytes: number) => {
  const box: Box = { data: new Uint8Array(randomBytes(bytes)) };
  return {
    box,
    state: {
      snapshot: () => box.data,
      restore: async (r: Readable) => {
        box.data = await readAll(r);
      },
    },
  };
};

export interface CheckpointFleetOptions extends Partial<HubOptions> {
  /** Called once for the hub and once for each node. (Default: a fresh file:// folder, removed on close) */
  objects?: () => string | ObjectStore;
}

export interface CheckpointNodeOptions extends Partial<Omit<NodeAgentOptions, "name" | "handlers">> {
  /** The node's checkpointable state; undefined: a node without the checkpoints plug-in. (Default: `bytes` random bytes) */
  state?: NodeState;
  /** The node's checkpoint store. (Default: the fleet's) */
  checkpointStore?: string | ObjectStore;
  /** Makes the node a warm standby. (Default: none) */
  standby?: StandbyOptions;
  /** Size of the node's random state. (Default: 1024) */
  bytes?: number;
  /** The node's own handlers, given its state. */
  handlers?: (box: Box) => Record<string, Handler>;
}

/**
 * A hub on a `memory:` store with a checkpoint store, one connected Fleet, and nodes whose state is bytes in
 * memory (heartbeat 300 ms, unless told). `close` ends them all.
 */
export const startCheckpointFleet = async ({ objects, ...o }: CheckpointFleetOptions = {}) => {
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-ckpt-"));
  const objectsUrl = `file://${join(dir, "objects")}`;
  const objs = objects ?? (() => objectsUrl);
  const f = await startFleet({ storeUrl: "memory:", checkpointStore: objs(), ...o });
  const fleet = await f.fleet();
  return {
    ...f,
    fleet,
    /** The default checkpoint store (not used when `objects` is given). */
    objectsUrl,
    async node(name: string, { bytes = 1024, handlers = () => ({}), ...extra }: CheckpointNodeOptions = {}) {
      const s = memState(bytes);
      const { state = "state" in extra ? undefined : s.state, checkpointStore, standby, ...rest } = extra;
      const plugins = state
        ? [nodeCheckpoints({ state, objects: checkpointStore ?? objs(), ...(standby ? { standby } : {}) })]
        : [];
      const agent = await f.node(name, handlers(s.box), { heartbeatIntervalMs: 300, plugins, ...rest });
      return { agent, ...s };
    },
    async close() {
      await f.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
};
export type CheckpointFleet = Awaited<ReturnType<typeof startCheckpointFleet>>;
