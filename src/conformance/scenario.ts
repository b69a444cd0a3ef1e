import type { Fleet } from "../coordinator/fleet.ts";
import type { RunHandle } from "../coordinator/run.ts";
import type { WireResult } from "../protocol/wire.ts";
import type { KitCluster, Replica } from "./cluster.ts";
import type { NodeProcess } from "./node-process.ts";

/** The node under test did something a correct node does not (the message says what, with numbers). */
export class ScenarioFailure extends Error {}
/** The scenario cannot run against these hubs (e.g. they lack a feature it needs); says why. */
export class ScenarioSkip extends Error {}

export const fail = (why: string): never => {
  throw new ScenarioFailure(why);
};

export interface Scenario {
  name: string;
  /** One line: what it checks (--list, docs/conformance.md). */
  summary: string;
  /** The documented bound of the whole scenario, in ms; past it (plus a margin) the scenario fails. */
  boundMs: number;
  run(ctx: ScenarioContext): Promise<void>;
}

/** One instruction pushed to the node under test and the wait for its reply. */
export interface Pushed {
  id: string;
  result: Promise<WireResult>;
}

/** What a scenario gets from the kit. */
export interface ScenarioContext {
  readonly cluster: KitCluster;
  readonly fleet: Fleet;
  /** A run of its own, closed after the scenario. */
  readonly run: RunHandle;
  /** The node under test on the two replicas (started if it is not running) and its node id, once online. */
  node(): Promise<{ proc: NodeProcess; nodeId: string }>;
  /** Starts the node command against other hubs (the scenario owns it; the kit stops it afterwards). */
  spawnNode(hubs: string[]): NodeProcess;
  /** The node process is about to end on purpose: its exit no longer fails `until` at once. */
  expectExit(): void;
  /** Stops the shared node process (SIGTERM); the next `node()` starts it again. */
  stopNode(): Promise<void>;
  /** A third replica over the same store that speaks only protocol 99 (started on first use). */
  refusingReplica(): Promise<Replica>;
  /** Pushes one instruction to the node (TTL 30 s unless given). */
  push(method: string, payload: unknown, ttlMs?: number): Promise<Pushed>;
  /** The reply to an instruction within `ms`, else a failure naming `what` (and the node's exit, if it died). */
  reply(p: Pushed, ms: number, what: string): Promise<WireResult>;
  /** Waits until `cond` holds (checked every 25 ms), else fails with `what`; at once if the node exits. */
  until(cond: () => boolean | Promise<boolean>, ms: number, what: string | (() => string)): Promise<void>;
  /** Whether the hubs implement features that arrived with protocol versioning (probed once per run). */
  supports(feature: "leave" | "protocols"): Promise<boolean>;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
