// HTTP deadlines against a blackholed replica: every request ends within its timeout, a call's timeoutMs
// covers its push, and a healthy replica behind a dead one is used in time.
import net from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { DeadlineExceededError, IncompleteCallError } from "../../src/coordinator/errors.ts";
import { Fleet } from "../../src/coordinator/fleet.ts";
import { HubClient } from "../../src/coordinator/http.ts";
import type { StreamItem } from "../../src/coordinator/run.ts";
import { isFleetlinkError } from "../../src/protocol/errors.ts";
import { type Blackhole, startBlackhole } from "../helpers/blackhole.ts";
import { rejectsWith } from "../helpers/expect.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

/** One in-process hub behind two partitionable paths: replica "a" and replica "b" of the same hub. */
const twoPaths = async (): Promise<{ f: TestFleet; a: Blackhole; b: Blackhole }> => {
  const f = await startFleet();
  cleanups.push(() => f.close());
  const target = { host: "127.0.0.1", port: Number(new URL(f.url).port) };
  const a = await startBlackhole(target);
  const b = await startBlackhole(target);
  cleanups.push(
    () => a.close(),
    () => b.close(),
  );
  return { f, a, b };
};

/** A loopback URL nothing listens on. */
const closedPort = async (): Promise<string> => {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
};

const timed = async <T>(p: Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> => {
  const t0 = performance.now();
  try {
    const value = await p;
    return { ms: performance.now() - t0, value };
  } catch (error) {
    return { ms: performance.now() - t0, error };
  }
};

describe("deadlines", () => {
  test("http - a request to a blackholed replica fails within requestTimeoutMs per try, as HUB_UNAVAILABLE naming the URL", async () => {
    const { a } = await twoPaths();
    const http = new HubClient([a.url], TOKEN, { requestTimeoutMs: 400 });
    await http.request("GET", "/v1/stats");
    a.cut();
    // One replica, retryable: two tries of 400 ms.
    const r = await timed(http.request("GET", "/v1/stats"));
    expect(r.ms).toBeLessThan(2 * 400 + 500);
    const err = await rejectsWith(Promise.reject(r.error), "HUB_UNAVAILABLE");
    expect(err.message).toContain(a.url);
    expect(err.message).toMatch(/did not answer GET \/v1\/stats within 400 ms/);
    // Not retryable: one try.
    const once = await timed(http.request("POST", "/v1/runs", undefined, { retry: false }));
    expect(once.ms).toBeLessThan(400 + 500);
    expect(isFleetlinkError(once.error, "HUB_UNAVAILABLE")).toBe(true);
    // A deadline shorter than the timeout wins, and says so.
    const dl = await timed(http.request("GET", "/v1/stats", undefined, { deadline: Date.now() + 150 }));
    expect(dl.ms).toBeLessThan(150 + 500);
    expect(dl.error).toBeInstanceOf(DeadlineExceededError);
    expect((dl.error as Error).message).toContain(a.url);
    // The caller's signal ends it at once, as CANCELLED.
    const ac = new AbortController();
    setTimeout(() => ac.abort("enough"), 100);
    const ab = await timed(http.request("GET", "/v1/stats", undefined, { signal: ac.signal }));
    expect(ab.ms).toBeLessThan(100 + 500);
    expect(isFleetlinkError(ab.error, "CANCELLED")).toBe(true);
  }, 15_000);

  test("http - a refused replica is skipped at once and named in the error when every replica refuses", async () => {
    const { a } = await twoPaths();
    const dead = await closedPort();
    const http = new HubClient([dead, a.url], TOKEN, { requestTimeoutMs: 400 });
    const ok = await timed(http.request<{ instructions: unknown }>("GET", "/v1/stats"));
    expect(ok.error).toBeUndefined();
    expect(ok.ms).toBeLessThan(500);
    const only = new HubClient([dead], TOKEN);
    const err = await rejectsWith(only.request("GET", "/v1/stats"), "HUB_UNAVAILABLE");
    expect(err.message).toContain(dead);
    expect(err.message).toMatch(/ECONNREFUSED/);
  }, 15_000);

  test("call - against a blackholed first replica and a healthy second, call({ timeoutMs: 2000 }) succeeds in time", async () => {
    const { f, a, b } = await twoPaths();
    const node = await f.node("echo", { echo: (p) => p });
    // A ping interval longer than the test: only the push's own timeout may find the dead replica.
    const fleet = await Fleet.connect({ hub: [a.url, b.url], token: TOKEN, pingIntervalMs: 60_000 });
    cleanups.push(() => fleet.close());
    const run = await fleet.createRun();
    expect(run.replyStream).toEqual({ state: "connected", hub: a.url });
    const cfg = run.configuration([node.nodeId!]);
    await cfg.call("echo", "warm", { quorum: "all", timeoutMs: 5000 });
    a.cut();
    const r = await timed(cfg.call("echo", "through b", { quorum: "all", timeoutMs: 2000 }));
    console.log(`call via the second replica after the first was blackholed: ${Math.round(r.ms)} ms`);
    expect(r.error).toBeUndefined();
    expect(r.value!.replies.get(node.nodeId!)).toBe("through b");
    expect(r.ms).toBeLessThan(2000 + 500);
    // The reply stream follows once a probe finds its replica silent; the next calls go straight to b.
    const t0 = Date.now();
    while (!(run.replyStream.state === "connected" && run.replyStream.hub === b.url)) {
      expect(Date.now() - t0).toBeLessThan(1500);
      await new Promise((r) => setTimeout(r, 10));
    }
    const next = await timed(cfg.call("echo", "again", { quorum: "all", timeoutMs: 2000 }));
    expect(next.error).toBeUndefined();
    expect(next.ms).toBeLessThan(1000);
  }, 20_000);

  test("call - with every replica blackholed, call({ timeoutMs: 1500 }) fails within the deadline; stream and broadcast too", async () => {
    const { f, a, b } = await twoPaths();
    const node = await f.node("echo", { echo: (p) => p });
    const fleet = await Fleet.connect({ hub: [a.url, b.url], token: TOKEN, pingIntervalMs: 60_000 });
    cleanups.push(() => fleet.close());
    const run = await fleet.createRun();
    const cfg = run.configuration([node.nodeId!]);
    a.cut();
    b.cut();
    const r = await timed(cfg.call("echo", 1, { quorum: "all", timeoutMs: 1500 }));
    console.log(`call with every replica blackholed: failed after ${Math.round(r.ms)} ms`);
    expect(r.ms).toBeLessThan(1500 + 500);
    expect(r.error).toBeInstanceOf(IncompleteCallError);
    const e = (r.error as IncompleteCallError).errors.get(node.nodeId!)!;
    expect(e).toBeInstanceOf(DeadlineExceededError);
    expect(e.code).toBe("FLEETLINK_E_HUB_UNAVAILABLE");
    expect(String((e.cause as Error).message)).toMatch(/127\.0\.0\.1:\d+ did not answer POST/);

    const items: StreamItem[] = [];
    const s = await timed(
      (async () => {
        for await (const it of cfg.stream("echo", 2, { timeoutMs: 1000 })) items.push(it);
      })(),
    );
    expect(s.ms).toBeLessThan(1000 + 500);
    expect(items).toHaveLength(1);
    expect(items[0]!.ok).toBe(false);

    const bc = await timed(cfg.broadcast("echo", 3, { ttlMs: 60_000, timeoutMs: 1000 }));
    expect(bc.ms).toBeLessThan(1000 + 500);
    expect(bc.error).toBeInstanceOf(DeadlineExceededError);

    // The caller's signal ends a push in flight at once.
    const ac = new AbortController();
    setTimeout(() => ac.abort("stop"), 200);
    const c = await timed(cfg.call("echo", 4, { quorum: "all", timeoutMs: 10_000, signal: ac.signal }));
    expect(c.ms).toBeLessThan(200 + 500);
    expect((c.error as Error).message).toMatch(/cancelled/);
  }, 20_000);

  test("call - an empty configuration fails at once as INVALID_ARGUMENT, before any request", async () => {
    const { a } = await twoPaths();
    const fleet = await Fleet.connect({ hub: [a.url], token: TOKEN });
    cleanups.push(() => fleet.close());
    const run = await fleet.createRun();
    a.cut();
    const r = await timed(run.configuration([]).call("echo", 1, { timeoutMs: 5000 }));
    expect(r.ms).toBeLessThan(100);
    await rejectsWith(Promise.reject(r.error), "INVALID_ARGUMENT", "nodes");
  }, 10_000);
});
