import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { shortId } from "../protocol/node-label.ts";
import { plural } from "../util/plural.ts";

const say = (s: string) => process.stdout.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `fleetlink <args>` as a child process, adds it to `owned` at once (so it is ended even if it never
 * gets ready) and resolves with the first stdout match of `ready`; rejects if it exits or is not ready in 30 s.
 */
const start = (
  args: string[],
  ready: RegExp,
  owned: ChildProcess[],
): Promise<{ child: ChildProcess; match: RegExpMatchArray }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [process.argv[1]!, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    owned.push(child);
    let out = "";
    let err = "";
    const timer = setTimeout(
      () => reject(new Error(`fleetlink ${args[0]}: not ready in 30 s: ${err.slice(-2000)}`)),
      30_000,
    );
    child.stderr!.on("data", (d) => {
      err += d;
    });
    child.stdout!.on("data", (d) => {
      out += d;
      const m = out.match(ready);
      if (m) {
        clearTimeout(timer);
        resolve({ child, match: m });
      }
    });
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`fleetlink ${args[0]} exited ${code}: ${err.slice(-2000)}`));
    });
  });

/** SIGTERM, then SIGKILL after 3 s; resolves when every child has exited. */
const stopAll = (children: ChildProcess[]) =>
  Promise.all(
    children.map(
      (c) =>
        new Promise<void>((res) => {
          if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return res();
          const t = setTimeout(() => c.kill("SIGKILL"), 3000);
          c.once("exit", () => {
            clearTimeout(t);
            res();
          });
          c.kill("SIGTERM");
        }),
    ),
  );

export const demoCommand = (): Command =>
  new Command("demo")
    .description("Hub + node processes on a temporary SQLite file: quorum calls, a broadcast, a node crash.")
    .option("--nodes <n>", "node processes", "3")
    .action(async (o) => {
      const [{ IncompleteCallError }, { Fleet }] = await Promise.all([
        import("../coordinator/errors.ts"),
        import("../coordinator/fleet.ts"),
      ]);
      const n = Math.max(3, Number(o.nodes));
      const dir = mkdtempSync(join(tmpdir(), "fleetlink-demo-"));
      const token = "demo-token";
      const enrollToken = "demo-enroll-token";
      const children: ChildProcess[] = [];
      const self = fileURLToPath(import.meta.url);
      const handlers = join(self, "..", `demo-handlers${extname(self)}`);
      const t0 = Date.now();
      const summary: string[] = [];
      // Killed or interrupted (a test's timeout, Ctrl-C), the demo still ends its hub and nodes first.
      const interrupted = (sig: NodeJS.Signals) => {
        process.stderr.write(`fleetlink demo: ${sig}: stopping the hub and the nodes\n`);
        void stopAll(children).finally(() => {
          rmSync(dir, { recursive: true, force: true });
          process.exit(130);
        });
      };
      process.once("SIGTERM", interrupted);
      process.once("SIGINT", interrupted);
      try {
        say(`fleetlink demo: a hub and ${n} node processes on sqlite:${join(dir, "fleet.db")}\n`);
        const hub = await start(
          [
            "serve",
            "--db",
            `sqlite:${join(dir, "fleet.db")}`,
            "--port",
            "0",
            "--token",
            token,
            "--enroll-token",
            enrollToken,
            "--heartbeat",
            "500",
          ],
          /listening on (\S+)/,
          children,
        );
        const url = hub.match[1]!;
        say(`hub          ${url}`);
        const nodeArgs = (i: number) => [
          "node",
          "--hub",
          url,
          "--name",
          `node-${i}`,
          "--handlers",
          handlers,
          "--token",
          enrollToken,
          "--identity",
          join(dir, `node-${i}.json`),
          "--heartbeat",
          "500",
        ];
        const nodes: ChildProcess[] = [];
        for (let i = 0; i < n; i++) {
          const s = await start(nodeArgs(i), /online as (\S+)/, children);
          nodes.push(s.child);
          say(`node-${i}       pid ${s.child.pid}, id ${shortId(s.match[1]!)}`);
        }
        const fleet = await Fleet.connect({ hub: url, token });
        const all = await fleet.nodes({ status: "online" });
        const name = new Map(all.map((x) => [x.id, x.name]));
        const run = await fleet.createRun();
        const cfg = run.configuration(all);
        say(`\ncoordinator  run ${shortId(run.id)} over ${cfg.size} nodes\n`);

        for (const quorum of ["first", "majority", "all"] as const) {
          const t = Date.now();
          const r = await cfg.call("square", 7, { quorum, timeoutMs: 5000 });
          const who = [...r.replies.keys()].map((k) => name.get(k)).join(", ");
          const line = `call square(7) quorum=${quorum.padEnd(8)} → ${r.replies.size} repl${r.replies.size === 1 ? "y" : "ies"} = ${[...r.replies.values()][0]} from ${who} (${Date.now() - t} ms)`;
          say(line);
          summary.push(line);
        }

        const b1 = await cfg.broadcast("config", { version: 1 }, { ttlMs: 30_000 });
        const r1 = await b1.done;
        const line1 = `broadcast config v1 → replied by ${[...r1.values()].filter((x) => x.ok).length}/${n} nodes`;
        say(line1);
        summary.push(line1);

        say(`\nkilling node-${n - 1} (SIGKILL) in the middle of a call that needs all nodes…`);
        const call = cfg.call("slow", { ms: 1500 }, { quorum: "all", timeoutMs: 10_000 });
        await sleep(300);
        nodes[n - 1]!.kill("SIGKILL");
        const err = await call.then(
          () => null,
          (e: unknown) => e,
        );
        if (err instanceof IncompleteCallError) {
          const line = `call slow quorum=all → IncompleteCallError: ${plural(err.replies.size, "reply", "replies")}, ${[
            ...err.errors,
          ]
            .map(([k, e]) => `${name.get(k)} ${e.code}`)
            .join(", ")}`;
          say(line);
          summary.push(line);
        } else say(`call slow → unexpected: ${String(err)}`);

        const b2 = await cfg.broadcast("config", { version: 2 }, { ttlMs: 60_000 });
        await sleep(500);
        const st = await b2.status();
        say(
          `broadcast config v2 while node-${n - 1} is down → ${[...st].map(([k, v]) => `${name.get(k)}: ${v}`).join(", ")}`,
        );
        say(`restarting node-${n - 1} with the same identity…`);
        await start(nodeArgs(n - 1), /online as (\S+)/, children);
        const r2 = await b2.done;
        const back = r2.get(all.find((x) => x.name === `node-${n - 1}`)!.id);
        const line2 = `broadcast config v2 → replied by ${[...r2.values()].filter((x) => x.ok).length}/${n} nodes; node-${n - 1} got it after restart: ${back?.ok ? JSON.stringify(back.value) : "NO"}`;
        say(line2);
        summary.push(line2);
        await fleet.close();
        say(`\nsummary (${((Date.now() - t0) / 1000).toFixed(1)} s):`);
        for (const s of summary) say(`  • ${s}`);
      } finally {
        process.off("SIGTERM", interrupted);
        process.off("SIGINT", interrupted);
        await stopAll(children);
        rmSync(dir, { recursive: true, force: true });
      }
    });
