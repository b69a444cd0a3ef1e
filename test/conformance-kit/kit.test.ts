// The kit's own parts: what it says about a node command that cannot start, its fault proxy, and how it
// signals a node behind `sh -c`.
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { runKit, SCENARIOS } from "../../src/conformance/kit.ts";
import { NodeProcess } from "../../src/conformance/node-process.ts";
import { FaultProxy } from "../../src/conformance/proxy.ts";
import { FrameTap } from "../../src/conformance/tap.ts";
import type { Hub } from "../../src/hub/server.ts";
import { memoryPair, type Transport } from "../../src/stream/transport.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A TCP echo server: what it receives, it sends back. */
const echoServer = async () => {
  const server = net.createServer((s) => {
    s.on("error", () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
};

const dial = async (port: number) => {
  const s = net.connect(port, "127.0.0.1");
  await new Promise((r) => s.once("connect", r));
  let got = "";
  const closed = new Promise<string>((r) => s.once("close", () => r("closed")));
  s.on("data", (d) => {
    got += d;
  });
  s.on("error", () => {});
  cleanups.push(() => void s.destroy());
  return { s, got: () => got, closed };
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("conformance kit - the node command", () => {
  test("conformance kit - a command that exits at once fails every scenario with its exit code and stderr tail", async () => {
    const r = await runKit({ bin: "echo 'cannot find my config' >&2; exit 3", scenarios: ["echo", "leave"] });
    expect(r.ok).toBe(false);
    expect(r.verdicts.map((v) => v.outcome)).toEqual(["fail", "fail"]);
    expect(r.verdicts[0]!.why).toMatch(/exited with code 3; its stderr ends:\n\s+cannot find my config/);
    // Later scenarios say so at once instead of starting it again.
    expect(r.verdicts[1]!.why).toMatch(/could not be brought online earlier/);
    expect(r.verdicts[1]!.ms).toBeLessThan(1000);
  });

  test("conformance kit - a command that never comes online fails after the start timeout", async () => {
    const t0 = Date.now();
    const r = await runKit({ bin: "echo waiting >&2; sleep 30", scenarios: ["echo"], startTimeoutMs: 1500 });
    expect(r.verdicts[0]!.outcome).toBe("fail");
    expect(r.verdicts[0]!.why).toMatch(/did not come online .* within 1500 ms; its stderr ends:\n\s+waiting/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  test("conformance kit - an unknown scenario is refused before anything starts", async () => {
    await expect(runKit({ bin: "true", scenarios: ["echo", "nope"] })).rejects.toThrow(
      /unknown scenario nope/,
    );
  });

  test("conformance kit - the tap keeps a held instruction's progress from the hub and answers it {extended: []}", async () => {
    const tap = new FrameTap();
    let accepted: Transport | undefined;
    const fakeHub = {
      nodes: {
        accept: (_node: unknown, t: Transport) => {
          accepted = t;
        },
      },
    };
    tap.attach(fakeHub as unknown as Hub, 0);
    const [hubSide, nodeSide] = memoryPair();
    fakeHub.nodes.accept({ id: "n1" }, hubSide);
    const atHub: unknown[] = [];
    const atNode: unknown[] = [];
    accepted!.onMessage((f) => atHub.push(JSON.parse(f)));
    nodeSide.onMessage((f) => atNode.push(JSON.parse(f)));
    const progress = (id: string, ids: string[]) =>
      nodeSide.send(JSON.stringify({ t: "req", id, m: "progress", b: { ids } }));
    const settle = () => new Promise((r) => setTimeout(r, 10));

    tap.holdProgress("held");
    progress("p1", ["held"]);
    progress("p2", ["held", "other"]);
    await settle();
    expect(atNode).toEqual([{ t: "res", id: "p1", b: { extended: [] } }]);
    expect(atHub).toEqual([{ t: "req", id: "p2", m: "progress", b: { ids: ["other"] } }]);
    // The node said what it said: the tap records both requests as sent.
    expect(tap.requests("progress").map((e) => e.frame.id)).toEqual(["p1", "p2"]);

    tap.releaseProgress("held");
    progress("p3", ["held"]);
    await settle();
    expect(atHub.at(-1)).toEqual({ t: "req", id: "p3", m: "progress", b: { ids: ["held"] } });
    expect(atNode).toHaveLength(1);
  });

  test("conformance kit - every scenario has a name, a summary and a bound", () => {
    expect(SCENARIOS.map((s) => s.name)).toEqual([
      "echo",
      "handler-error",
      "inflight-window",
      "lease-extension",
      "redelivery-once",
      "reply-resend",
      "slow-hub",
      "superseded",
      "reconnect",
      "cancel",
      "leave",
      "version-refusal",
    ]);
    for (const s of SCENARIOS) {
      expect(s.summary.length).toBeGreaterThan(20);
      expect(s.boundMs).toBeGreaterThan(0);
    }
  });

  test("conformance kit - SIGTERM reaches the node behind sh -c and the shell ends with the node's exit code", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kit-proc-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const script =
      "process.on('SIGTERM', () => { console.error('graceful'); process.exit(7); }); setInterval(() => {}, 1000); console.log('up');";
    const p = new NodeProcess(
      `cd ${JSON.stringify(dir)} && ${JSON.stringify(process.execPath)} -e ${JSON.stringify(script)}`,
      {
        hubs: ["http://127.0.0.1:1"],
        enrollToken: "t",
        name: "n",
        workDir: join(dir, "work"),
      },
    );
    cleanups.push(() => p.stop());
    await new Promise<void>((r) => p.child.stdout!.once("data", () => r()));
    p.signal("SIGTERM");
    expect(await p.exited).toEqual({ code: 7, signal: null });
    expect(p.describeExit()).toMatch(/exited with code 7; its stderr ends:\n\s+graceful/);
  });

  test("conformance kit - the node gets the hub URLs, enrollment token, name and work dir in its environment", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kit-env-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const p = new NodeProcess(
      'echo "$FLEETLINK_HUB|$FLEETLINK_ENROLL_TOKEN|$FLEETLINK_NODE_NAME|$FLEETLINK_WORK_DIR" >&2',
      {
        hubs: ["http://127.0.0.1:1", "http://127.0.0.1:2"],
        enrollToken: "secret",
        name: "node-a",
        workDir: join(dir, "work"),
      },
    );
    await p.exited;
    expect(p.stderrTail()).toBe(`http://127.0.0.1:1,http://127.0.0.1:2|secret|node-a|${join(dir, "work")}`);
  });
});

describe("conformance kit - fault proxy", () => {
  test("conformance kit - cut resets the connections through the proxy; new ones still pass", async () => {
    const proxy = await FaultProxy.start(await echoServer());
    cleanups.push(() => proxy.close());
    const a = await dial(proxy.port);
    a.s.write("one");
    await sleep(50);
    expect(a.got()).toBe("one");
    proxy.cut();
    expect(await a.closed).toBe("closed");
    const b = await dial(proxy.port);
    b.s.write("two");
    await sleep(50);
    expect(b.got()).toBe("two");
    expect(proxy.accepted).toBe(2);
  });

  test("conformance kit - a blackhole holds bytes without closing anything; heal delivers them", async () => {
    const proxy = await FaultProxy.start(await echoServer());
    cleanups.push(() => proxy.close());
    const a = await dial(proxy.port);
    proxy.blackhole();
    a.s.write("held");
    await sleep(100);
    expect(a.got()).toBe("");
    expect(a.s.destroyed).toBe(false);
    proxy.heal();
    await sleep(100);
    expect(a.got()).toBe("held");
  });

  test("conformance kit - a proxy that is down refuses connections until it is up again", async () => {
    const proxy = await FaultProxy.start(await echoServer());
    cleanups.push(() => proxy.close());
    proxy.down();
    const a = net.connect(proxy.port, "127.0.0.1");
    a.on("error", () => {});
    await new Promise((r) => a.once("close", r));
    proxy.up();
    const b = await dial(proxy.port);
    b.s.write("back");
    await sleep(50);
    expect(b.got()).toBe("back");
  });
});
