import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PendingCalls } from "../../stream/pending.ts";
import { plural } from "../../util/plural.ts";
import type { Body, Message } from "../protocol.ts";
import { check, type Results } from "./checker.ts";
import type { Op } from "./history.ts";
import { type Partition, randomPartition } from "./nemesis.ts";
import { Network } from "./network.ts";
import type { NemesisEvent, Ran, TestParams } from "./params.ts";
import { renderReport } from "./report.ts";
import { rng } from "./rng.ts";

export type { NemesisEvent, Ran, TestParams } from "./params.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Maelstrom's topologies: what the `topology` message suggests to each node. */
export const topology = (nodes: string[], kind: TestParams["topology"]): Record<string, string[]> => {
  const out: Record<string, string[]> = {};
  const n = nodes.length;
  if (kind === "total") for (const a of nodes) out[a] = nodes.filter((b) => b !== a);
  else if (kind === "line")
    for (const [i, a] of nodes.entries())
      out[a] = [nodes[i - 1], nodes[i + 1]].filter((x): x is string => !!x);
  else if (kind === "tree")
    nodes.forEach((a, i) => {
      out[a] = [
        i > 0 ? nodes[Math.floor((i - 1) / 4)] : undefined,
        ...[1, 2, 3, 4].map((k) => nodes[4 * i + k]),
      ].filter((x): x is string => !!x);
    });
  else {
    const w = Math.ceil(Math.sqrt(n));
    nodes.forEach((a, i) => {
      const r = Math.floor(i / w);
      const c = i % w;
      out[a] = [
        [r - 1, c],
        [r + 1, c],
        [r, c - 1],
        [r, c + 1],
      ]
        .filter(([rr, cc]) => rr! >= 0 && cc! >= 0 && cc! < w && rr! * w + cc! < n)
        .map(([rr, cc]) => nodes[rr! * w + cc!]!);
    });
  }
  return out;
};

/** Runs one Maelstrom-style test and writes its run folder; resolves with the checker's results. */
export const runTest = async (
  p: TestParams,
  log: (s: string) => void = () => {},
): Promise<Results & { params: TestParams; nemesis: NemesisEvent[]; ran: Ran }> => {
  mkdirSync(p.out, { recursive: true });
  const r = rng(p.seed);
  const net = new Network(() => p.latencyMs);
  const nodes = Array.from({ length: p.nodeCount }, (_, i) => `n${i}`);
  const pending = new PendingCalls<Body>();
  const ops: Op[] = [];
  const nemesis: NemesisEvent[] = [];
  const clients = nodes.map((node, i) => ({ id: `c${i + 1}`, node, busy: false, next: 1 }));
  const onClientMessage = (client: string) => (m: Message) => {
    if (m.body.in_reply_to !== undefined) pending.deliver(`${client}:${m.body.in_reply_to}`, m.body);
  };
  net.addClient("c0", onClientMessage("c0"));
  for (const c of clients) net.addClient(c.id, onClientMessage(c.id));
  let controlId = 1;
  const request = (from: string, dest: string, body: Body, timeoutMs: number, msgId: number) => {
    const p2 = pending.add(`${from}:${msgId}`, { timeoutMs });
    net.send({ src: from, dest, body: { ...body, msg_id: msgId } });
    return p2;
  };

  const initTimeoutS = p.initTimeoutS ?? 30;
  const ran: Ran = { initOk: 0, initS: 0, clients: false, finalReads: false };
  const finish = async () => {
    await net.stop();
    const results: Results = check(p.workload, ops, net);
    if (!ran.clients) {
      results.problems = results.problems.filter((x) => x !== "no operation succeeded");
      results.problems.unshift("no client ran: not every node answered init (and topology) in time");
    }
    const out = { params: p, nemesis, ran, ...results, valid: results.problems.length === 0 };
    writeFileSync(join(p.out, "results.json"), JSON.stringify({ ...out, latencyPoints: undefined }, null, 2));
    writeFileSync(join(p.out, "history.json"), JSON.stringify(ops));
    writeFileSync(join(p.out, "report.html"), renderReport(out));
    return out;
  };
  try {
    log(`starting ${plural(p.nodeCount, "node")}: ${p.bin}`);
    for (const id of nodes) net.spawnNode(id, p.bin, p.out);
    const inits = await Promise.allSettled(
      nodes.map((id) =>
        request("c0", id, { type: "init", node_id: id, node_ids: nodes }, initTimeoutS * 1000, controlId++),
      ),
    );
    ran.initS = net.now() / 1000;
    inits.forEach((res, i) => {
      if (res.status === "fulfilled") ran.initOk++;
      else
        net.errors.push({
          node: nodes[i]!,
          kind: "init-timeout",
          detail: `no init_ok within ${initTimeoutS} s of its start (--init-timeout)`,
          time: net.now(),
        });
    });
    if (ran.initOk < p.nodeCount)
      log(
        `init: ${ran.initOk} of ${plural(p.nodeCount, "node")} answered within ${initTimeoutS} s; no client runs ` +
          "(a slow start-up? raise --init-timeout, or make --bin start faster)",
      );
    else log(`init: ${plural(p.nodeCount, "node")} ready in ${ran.initS.toFixed(1)} s`);
    if (p.workload === "broadcast" && net.errors.length === 0) {
      const topo = topology(nodes, p.topology);
      const acks = await Promise.allSettled(
        nodes.map((id) => request("c0", id, { type: "topology", topology: topo }, 5000, controlId++)),
      );
      acks.forEach((res, i) => {
        if (res.status === "rejected")
          net.errors.push({
            node: nodes[i]!,
            kind: "topology-timeout",
            detail: "no topology_ok within 5 s",
            time: net.now(),
          });
      });
    }
    // A run that could not start has nothing to drive, partition or check: it ends here (invalid).
    if (net.errors.length > 0) return await finish();

    const invoke = async (
      c: (typeof clients)[number],
      f: string,
      body: Body,
      value: unknown,
      final = false,
    ) => {
      const op: Op = {
        process: c.id,
        node: c.node,
        f,
        value,
        invoke: net.now(),
        complete: null,
        type: "pending",
        result: null,
        final,
      };
      ops.push(op);
      c.busy = true;
      try {
        const res = await request(c.id, c.node, body, p.clientTimeoutMs, c.next++);
        op.result = res;
        op.type = res.type === "error" ? ([0, 13].includes(Number(res.code)) ? "info" : "fail") : "ok";
      } catch {
        op.type = "info";
      }
      op.complete = net.now();
      c.busy = false;
    };

    let value = 0;
    const generate = (c: (typeof clients)[number]) => {
      const roll = r.next();
      switch (p.workload) {
        case "broadcast":
          if (roll < 0.5) {
            const v = value++;
            return invoke(c, "broadcast", { type: "broadcast", message: v }, v);
          }
          return invoke(c, "read", { type: "read" }, null);
        case "g-set":
          if (roll < 0.5) {
            const v = value++;
            return invoke(c, "add", { type: "add", element: v }, v);
          }
          return invoke(c, "read", { type: "read" }, null);
        case "echo": {
          const v = `hello ${value++}`;
          return invoke(c, "echo", { type: "echo", echo: v }, v);
        }
        case "unique-ids":
          return invoke(c, "generate", { type: "generate" }, null);
      }
    };

    const t0 = net.now();
    const endAt = t0 + p.timeLimitS * 1000;
    const inflight: Promise<void>[] = [];
    const nemesisLoop = (async () => {
      if (p.nemesis !== "partition") return;
      let active: Partition | null = null;
      for (;;) {
        const wait = p.nemesisIntervalS * 1000 * (0.5 + r.next());
        if (net.now() + wait >= endAt) break;
        await sleep(wait);
        if (active) {
          net.setPartition(null);
          nemesis.push({ time: net.now(), action: "heal", description: "all links healed" });
          active = null;
        } else {
          active = randomPartition(nodes, r);
          net.setPartition(active);
          nemesis.push({
            time: net.now(),
            action: "start",
            description: `${active.kind}: ${active.description}`,
          });
        }
        log(`nemesis ${nemesis[nemesis.length - 1]!.description}`);
      }
    })();
    log(`clients: ${p.rate} ops/s for ${p.timeLimitS} s`);
    ran.clients = true;
    while (net.now() < endAt) {
      await sleep(r.exp(1000 / p.rate));
      const idle = clients.filter((c) => !c.busy);
      if (idle.length > 0) inflight.push(generate(r.pick(idle)) as Promise<void>);
    }
    await nemesisLoop;
    await Promise.allSettled(inflight);
    net.setPartition(null);
    nemesis.push({ time: net.now(), action: "heal", description: "final heal" });
    if (p.workload === "broadcast" || p.workload === "g-set") {
      log(`healed; waiting ${p.recoveryS} s before final reads`);
      await sleep(p.recoveryS * 1000);
      ran.finalReads = true;
      await Promise.all(clients.map((c) => invoke(c, "read", { type: "read" }, null, true)));
    }
    return await finish();
  } finally {
    // Every path, a thrown error included, ends every node process before returning.
    await net.stop();
    pending.closeAll(new Error("run over"));
  }
};
