import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Fleet } from "../coordinator/fleet.ts";
import type { RunHandle } from "../coordinator/run.ts";
import { describeError } from "../protocol/errors.ts";
import { type KitCluster as Cluster, KitCluster, type Replica } from "./cluster.ts";
import { NodeProcess } from "./node-process.ts";
import { probeHub } from "./probe.ts";
import {
  fail,
  type Pushed,
  type Scenario,
  type ScenarioContext,
  ScenarioFailure,
  ScenarioSkip,
  sleep,
} from "./scenario.ts";
import { basicScenarios } from "./scenarios/basic.ts";
import { cancelScenarios } from "./scenarios/cancel.ts";
import { faultScenarios } from "./scenarios/faults.ts";
import { lifecycleScenarios } from "./scenarios/lifecycle.ts";

/** Every scenario, in the order the kit runs them (the ones that end the node process come last). */
export const SCENARIOS: readonly Scenario[] = [
  ...basicScenarios,
  ...faultScenarios,
  ...cancelScenarios,
  ...lifecycleScenarios,
];

export interface KitOptions {
  /** The node under test: a shell command (`sh -c`), given the environment of docs/conformance.md. */
  bin: string;
  /** Scenario names to run, in the kit's order. (Default: all) */
  scenarios?: readonly string[];
  /** How long the node has to come online after it starts, in ms. (Default: 20000) */
  startTimeoutMs?: number;
  /** Keep the kit's directory (hub database, the node's work dir, calls.log, node.log). (Default: false) */
  keep?: boolean;
  /** Each line of the report as it is decided. (Default: none) */
  out?: (line: string) => void;
}

export interface Verdict {
  scenario: string;
  outcome: "pass" | "fail" | "skip";
  ms: number;
  /** Why it failed or was skipped. */
  why?: string;
}

export interface KitReport {
  verdicts: Verdict[];
  /** True iff no scenario failed. */
  ok: boolean;
  /** The kit's directory (removed unless `keep`). */
  dir: string;
}

/** The report line of one verdict. */
export const verdictLine = (v: Verdict): string =>
  v.outcome === "pass"
    ? `PASS ${v.scenario} (${v.ms} ms)`
    : `${v.outcome === "fail" ? "FAIL" : "SKIP"} ${v.scenario}: ${v.why}`;

/** Scenario names that are not the kit's, or undefined. */
export const unknownScenarios = (names: readonly string[]): string[] =>
  names.filter((n) => !SCENARIOS.some((s) => s.name === n));

/** How long a node left running by the last scenario has to be online again before it is replaced. */
const REJOIN_MS = 5000;

/** Extra time past a scenario's bound before the kit gives up on it (its own checks fail first). */
const SCENARIO_MARGIN_MS = 15_000;

/**
 * Runs the conformance scenarios against a node command: real hub replicas in-process over a SQLite file in
 * a temp dir, the node as an OS process behind fault proxies, a real coordinator driving each scenario. The
 * node process is shared by the scenarios and started again only when one ended it.
 */
export const runKit = async (o: KitOptions): Promise<KitReport> => {
  const unknown = unknownScenarios(o.scenarios ?? []);
  if (unknown.length > 0) throw new Error(`unknown scenario ${unknown.join(", ")}: see --list`);
  const chosen = o.scenarios?.length ? SCENARIOS.filter((s) => o.scenarios!.includes(s.name)) : SCENARIOS;
  const dir = mkdtempSync(join(tmpdir(), "fleetlink-conformance-"));
  const out = o.out ?? (() => {});
  const verdicts: Verdict[] = [];
  const cluster = await KitCluster.start(dir);
  const session = new NodeSession(o, cluster, dir);
  let fleet: Fleet | undefined;
  try {
    fleet = await Fleet.connect({ hub: cluster.adminUrls, token: cluster.token });
    for (const s of chosen) {
      session.watched = undefined;
      const v = await runScenario(s, cluster, fleet, session);
      verdicts.push(v);
      out(verdictLine(v));
      await restore(cluster);
    }
  } finally {
    await session.stop();
    await fleet?.close();
    await cluster.close();
    if (!o.keep) rmSync(dir, { recursive: true, force: true });
  }
  return { verdicts, ok: verdicts.every((v) => v.outcome !== "fail"), dir };
};

/** Undoes what a scenario broke: blackholes healed, killed replicas started again, no slow store. */
const restore = async (cluster: Cluster): Promise<void> => {
  cluster.faults.delayMs = 0;
  cluster.tap.releaseProgress();
  // A reply store slowed by the last scenario would hold up the replica's next replies.
  await cluster.faults.idle(10_000);
  for (const r of cluster.replicas) {
    r.proxy.heal();
    await cluster.restart(r);
  }
};

/** The node under test across scenarios: one process while it lives, started again when one ended it. */
class NodeSession {
  proc: NodeProcess | undefined;
  nodeId: string | undefined;
  /** Why the node could not be brought online, once that happened: later scenarios fail at once with it. */
  broken: string | undefined;
  /** The node a scenario got from node() and did not expect to end: its exit fails the waits at once. */
  watched: NodeProcess | undefined;
  readonly name = `conformance-${randomBytes(3).toString("hex")}`;
  readonly workDir: string;
  private readonly probes = new Map<string, Promise<boolean>>();
  private refusing: Replica | undefined;

  readonly o: KitOptions;
  readonly cluster: Cluster;

  constructor(o: KitOptions, cluster: Cluster, dir: string) {
    this.o = o;
    this.cluster = cluster;
    this.workDir = join(dir, "node");
  }

  spawn(hubs: string[]): NodeProcess {
    return new NodeProcess(this.o.bin, {
      hubs,
      enrollToken: this.cluster.enrollToken,
      name: this.name,
      workDir: this.workDir,
    });
  }

  /** The running node, online on one of the two replicas. */
  async node(): Promise<{ proc: NodeProcess; nodeId: string }> {
    const n = await this.bringOnline();
    this.watched = n.proc;
    return n;
  }

  private async bringOnline(): Promise<{ proc: NodeProcess; nodeId: string }> {
    if (this.broken) fail(`the node could not be brought online earlier: ${this.broken}`);
    // A process left over from the last scenario gets a moment to come back; one that does not (it gave up
    // after a fault, which that scenario judged) is replaced by a fresh one.
    if (this.proc?.running) {
      const online = await this.online(this.proc, REJOIN_MS);
      if (online) return { proc: this.proc, nodeId: online };
      await this.proc.stop();
    }
    const proc = this.spawn(this.cluster.nodeUrls());
    this.proc = proc;
    const timeout = this.o.startTimeoutMs ?? 20_000;
    const online = await this.online(proc, timeout);
    if (online) return { proc, nodeId: online };
    this.broken = proc.running
      ? `it did not come online (enroll as FLEETLINK_NODE_NAME=${this.name}, then hello) within ${timeout} ms${proc.stderrTail() ? `; its stderr ends:\n    ${proc.stderrTail()}` : ""}`
      : `it exited before it came online: ${proc.describeExit()}`;
    return fail(this.broken);
  }

  /** The node's id once it is online on one of the replicas (within `ms`), undefined if not or if it exits. */
  private async online(proc: NodeProcess, ms: number): Promise<string | undefined> {
    const deadline = Date.now() + ms;
    while (proc.running) {
      for (const n of await this.cluster.admin.listNodes())
        if (n.name === this.name && this.cluster.replicaOf(n.id)) {
          this.nodeId = n.id;
          return n.id;
        }
      if (Date.now() >= deadline) return undefined;
      await sleep(50);
    }
    return undefined;
  }

  async refusingReplica(): Promise<Replica> {
    this.refusing ??= await this.cluster.addReplica({ protocols: [99] });
    return this.refusing;
  }

  supports(feature: "leave" | "protocols"): Promise<boolean> {
    let p = this.probes.get(feature);
    if (!p) {
      p = (async () => {
        const url =
          feature === "leave"
            ? this.cluster.adminUrls[0]!
            : `http://127.0.0.1:${(await this.refusingReplica()).port}`;
        const r = await probeHub(url, this.cluster.enrollToken).catch(
          () => ({}) as { refused?: string; left?: boolean },
        );
        return feature === "leave" ? r.left === true : r.refused === "FLEETLINK_E_UNSUPPORTED_PROTOCOL";
      })();
      this.probes.set(feature, p);
    }
    return p;
  }

  async stop(): Promise<void> {
    this.watched = undefined;
    await this.proc?.stop();
  }
}

const runScenario = async (
  s: Scenario,
  cluster: Cluster,
  fleet: Fleet,
  session: NodeSession,
): Promise<Verdict> => {
  const t0 = Date.now();
  let run: RunHandle | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const owned: NodeProcess[] = [];
  try {
    run = await fleet.createRun();
    const ctx = context(cluster, fleet, run, session, owned);
    await Promise.race([
      s.run(ctx),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new ScenarioFailure(`no verdict within ${s.boundMs + SCENARIO_MARGIN_MS} ms`)),
          s.boundMs + SCENARIO_MARGIN_MS,
        );
      }),
    ]);
    return { scenario: s.name, outcome: "pass", ms: Date.now() - t0 };
  } catch (e) {
    const outcome = e instanceof ScenarioSkip ? "skip" : "fail";
    const why =
      e instanceof ScenarioFailure || e instanceof ScenarioSkip
        ? e.message
        : `kit error: ${describeError(e)}`;
    return { scenario: s.name, outcome, ms: Date.now() - t0, why };
  } finally {
    clearTimeout(timer);
    for (const p of owned) await p.stop();
    await run?.close();
  }
};

/** Where an unanswered instruction got to, for a timeout's verdict. */
const whereIs = async (cluster: Cluster, runId: string, id: string): Promise<string> => {
  const [ins] = await cluster.admin.getInstructions(runId, [id]).catch(() => []);
  const deliveries = cluster.tap.deliveries(id);
  const acked = deliveries.filter((d) => d.ackedAt !== undefined).length;
  const replies = cluster.faults.repliesTo(id);
  return [
    ins ? `instruction ${ins.state}, attempts ${ins.attempts}` : "instruction not found",
    `delivered ${deliveries.length}× (${acked} acknowledged)`,
    `reply frames ${cluster.tap.replyIds(id).length}, store answers [${replies.map((r) => (r.result.ok ? (r.result.duplicate ? "duplicate" : "stored") : r.result.error.code)).join(", ")}]`,
  ].join("; ");
};

const context = (
  cluster: Cluster,
  fleet: Fleet,
  run: RunHandle,
  session: NodeSession,
  owned: NodeProcess[],
): ScenarioContext => {
  const until: ScenarioContext["until"] = async (cond, ms, what) => {
    const deadline = Date.now() + ms;
    const text = () => (typeof what === "function" ? what() : what);
    // The node dying meanwhile is the answer, at once, rather than a timeout.
    const proc = session.watched;
    for (;;) {
      if (await cond()) return;
      if (proc && !proc.running) fail(`waiting for ${text()}: ${proc.describeExit()}`);
      if (Date.now() >= deadline) fail(`timed out after ${ms} ms waiting for ${text()}`);
      await sleep(25);
    }
  };
  return {
    cluster,
    fleet,
    run,
    node: () => session.node(),
    spawnNode(hubs) {
      const p = session.spawn(hubs);
      owned.push(p);
      return p;
    },
    async stopNode() {
      await session.stop();
    },
    expectExit() {
      session.watched = undefined;
    },
    refusingReplica: () => session.refusingReplica(),
    async push(method, payload, ttlMs = 30_000): Promise<Pushed> {
      const nodeId = session.nodeId;
      if (!nodeId) return fail("no node to call");
      const [w] = await run.push([nodeId], method, payload, { ttlMs });
      // Closing the run fails open waits; a scenario that stopped waiting must not leave them unhandled.
      w!.result.catch(() => undefined);
      return { id: w!.id, result: w!.result };
    },
    async reply(p, ms, what) {
      const proc = session.proc;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const exited = proc?.running ? proc.exited.then(() => "exit" as const) : new Promise<never>(() => {});
      try {
        const r = await Promise.race([
          p.result,
          exited,
          new Promise<"timeout">((res) => {
            timer = setTimeout(() => res("timeout"), ms);
          }),
        ]);
        if (r === "exit") return fail(`waiting for ${what}: ${proc!.describeExit()}`);
        if (r === "timeout")
          return fail(
            `timed out after ${ms} ms waiting for ${what} (${await whereIs(cluster, run.id, p.id)})`,
          );
        return r;
      } catch (e) {
        return fail(`waiting for ${what}: ${describeError(e)}`);
      } finally {
        clearTimeout(timer);
      }
    },
    until,
    supports: (f) => session.supports(f),
  };
};
