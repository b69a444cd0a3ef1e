// What an operator's tools read from a hub over HTTP: the caller's x-request-id in the request log line and
// echoed back (bounded and printable, else ignored), and prom-client's default process metrics under their
// standard names, so stock Node.js dashboards work. A real hub over a real socket (and inject for headers a
// fetch cannot send).
import { Writable } from "node:stream";
import pino from "pino";
import { afterEach, describe, expect, test } from "vitest";
import { MAX_REQUEST_ID_CHARS, requestIdOf } from "../../src/hub/http/request-log.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

/** A hub whose log lines are collected as parsed JSON. */
const loggedFleet = async () => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split("\n")) if (l.trim()) lines.push(JSON.parse(l));
      done();
    },
  });
  const f = await startFleet({ logger: pino({ level: "info" }, sink) });
  return { f, lines };
};

/** The request log line of the request answered with this id (the hub writes it on completion). */
const lineOf = async (lines: Record<string, unknown>[], id: string) => {
  const deadline = Date.now() + 2000;
  for (;;) {
    const l = lines.find((x) => x.msg === "request" && x.reqId === id);
    if (l || Date.now() > deadline) return l;
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe("x-request-id", () => {
  let f: TestFleet;
  afterEach(async () => {
    await f.close();
  });

  test("x-request-id - a good id is the request's id in the log line and is echoed; bad ones are ignored", async () => {
    const logged = await loggedFleet();
    f = logged.f;
    const get = (headers: Record<string, string | string[]>) =>
      f.hub.app.inject({
        method: "GET",
        url: "/v1/runs",
        headers: { authorization: `Bearer ${TOKEN}`, ...headers },
      });

    // Over a real socket.
    const given = "trace-4bf92f3577b34da6:req/42";
    const res = await fetch(`${f.url}/v1/runs`, {
      headers: { authorization: `Bearer ${TOKEN}`, "x-request-id": given },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-request-id")).toBe(given);
    const line = await lineOf(logged.lines, given);
    expect(line).toMatchObject({ reqId: given, method: "GET", route: "/v1/runs", status: 200 });

    const longest = "a".repeat(MAX_REQUEST_ID_CHARS);
    expect((await get({ "x-request-id": longest })).headers["x-request-id"]).toBe(longest);
    expect(await lineOf(logged.lines, longest)).toBeDefined();

    const bad: [string, string | string[]][] = [
      ["too long", "a".repeat(MAX_REQUEST_ID_CHARS + 1)],
      ["a space", "two words"],
      ["a tab", "a\tb"],
      ["non-ASCII", "caf\u00e9"],
      ["empty", ""],
      ["repeated", ["one", "two"]],
    ];
    for (const [why, value] of bad) {
      const r = await get({ "x-request-id": value });
      expect(r.statusCode, why).toBe(200);
      const own = r.headers["x-request-id"] as string;
      expect(own, why).toBeTruthy();
      expect(own, why).not.toBe(value);
      expect(own.includes("two"), why).toBe(false);
      // The hub's own id names the line instead.
      expect(await lineOf(logged.lines, own), why).toBeDefined();
    }
    // Without the header the hub's own id is echoed too.
    const plain = await get({});
    expect(plain.headers["x-request-id"]).toMatch(/^req-/);

    // A refused request (no credential) is still logged and answered under the caller's id.
    const refused = await fetch(`${f.url}/v1/runs`, { headers: { "x-request-id": "refused-1" } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("x-request-id")).toBe("refused-1");
    expect(await lineOf(logged.lines, "refused-1")).toMatchObject({ status: 401 });
    const unknown = await fetch(`${f.url}/v1/no-such-route`, { headers: { "x-request-id": "missing-1" } });
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get("x-request-id")).toBe("missing-1");
    expect(await lineOf(logged.lines, "missing-1")).toMatchObject({ status: 404, route: "unmatched" });
  });

  test("requestIdOf - accepts 1 to 128 visible ASCII characters, nothing else", () => {
    expect(requestIdOf("abc-123_/:.=+")).toBe("abc-123_/:.=+");
    for (const v of [undefined, 42, ["a"], "", " a", "a\nb", "a\u0000", "é", "x".repeat(129)])
      expect(requestIdOf(v), JSON.stringify(v)).toBeUndefined();
  });
});

describe("default process metrics", () => {
  let f: TestFleet;
  afterEach(async () => {
    await f.close();
  });

  test("metrics - prom-client's default metrics keep their standard names on /metrics", async () => {
    f = await startFleet();
    const res = await fetch(`${f.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    const text = await res.text();
    const names = new Set(
      text
        .split("\n")
        .filter((l) => l.startsWith("# TYPE "))
        .map((l) => l.split(" ")[2]!),
    );
    for (const n of [
      "process_cpu_seconds_total",
      "process_cpu_user_seconds_total",
      "process_resident_memory_bytes",
      "process_start_time_seconds",
      "nodejs_eventloop_lag_seconds",
      "nodejs_heap_size_used_bytes",
      "nodejs_gc_duration_seconds",
    ])
      expect(names.has(n), n).toBe(true);
    expect([...names].filter((n) => /^fleetlink_(process|nodejs)_/.test(n))).toEqual([]);
    // fleetlink's own series keep their prefix.
    expect(names.has("fleetlink_http_requests_total")).toBe(true);
  });
});
