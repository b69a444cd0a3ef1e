// Property-based fuzzing of every HTTP route the hub registers, and of the node stream: whatever a client
// sends, the hub answers below 500, refuses in the fleetlink error shape, and a refusal changes nothing.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, test } from "vitest";
import WebSocket from "ws";
import { createHub } from "../../src/hub/server.ts";
import { newId } from "../../src/protocol/ids.ts";
import { openStore } from "../../src/store/open.ts";

const ADMIN = "admin-token-fuzz";
const ENROLL = "enroll-token-fuzz";

const dir = mkdtempSync(join(tmpdir(), "fleetlink-fuzz-"));
const store = await openStore(`sqlite:${join(dir, "hub.db")}`);
// No background sweeps or polls: the store must change only because of the request under test.
const hub = createHub({
  store,
  token: ADMIN,
  enrollToken: ENROLL,
  checkpointStore: `file://${join(dir, "checkpoints")}`,
  sweepIntervalMs: 3_600_000,
  pollIntervalMs: 3_600_000,
  pingIntervalMs: 3_600_000,
});
const url = await hub.listen();

afterAll(async () => {
  await hub.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Route {
  method: string;
  path: string;
}

/** Every route the hub registered, read from Fastify's route tree (so routes added later are fuzzed too). */
const registeredRoutes = (tree: string): Route[] => {
  const out: Route[] = [];
  const stack: string[] = [];
  for (const line of tree.split("\n")) {
    const m = /^([│ ]*)[├└]── (\S+)(?: \(([^)]+)\))?$/.exec(line.trimEnd());
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    for (const method of m[3]?.split(", ") ?? [])
      if (method !== "HEAD") out.push({ method, path: stack.join("") });
  }
  return out;
};
// GET /v1/events is an endless event stream (inject would wait for its end); test/hub/dashboard-feed.test.ts
// checks its refusals.
const routes = registeredRoutes(hub.app.printRoutes({ commonPrefix: false })).filter(
  (r) => r.path !== "/v1/events",
);

// Fixtures the generators draw from, so that some requests reach deep into a handler rather than bouncing off
// the first check: a real run, a real node and its credential.
const inject = (method: string, path: string, auth?: string, body?: string, type = "application/json") =>
  hub.app.inject({
    method: method as "GET",
    url: path,
    headers: {
      ...(auth ? { authorization: auth } : {}),
      ...(body !== undefined ? { "content-type": type } : {}),
    },
    ...(body !== undefined ? { payload: body } : {}),
  });
const enrollNode = async (name: string) => {
  const r = await inject("POST", "/v1/nodes/enroll", `Bearer ${ENROLL}`, JSON.stringify({ name }));
  if (r.statusCode !== 201) throw new Error(`enroll: ${r.statusCode} ${r.body}`);
  return r.json() as { node: { id: string }; credential: string };
};
// Several nodes: a fuzzed DELETE may unregister some of them, which is an accepted request, not a bug.
const pool = await Promise.all([0, 1, 2].map((i) => enrollNode(`fuzz-node-${i}`)));
const node = pool[0]!.node;
const NODE_AUTH = `Bearer ${node.id}.${pool[0]!.credential}`;
const runId = ((await inject("POST", "/v1/runs", `Bearer ${ADMIN}`, "{}")).json() as { run: { id: string } })
  .run.id;
/** A stored enrollment token's id, when the hub has that route. */
const tokenId = await (async () => {
  const r = await inject("POST", "/v1/enroll-tokens", `Bearer ${ADMIN}`, "{}");
  return r.statusCode === 201 ? (r.json() as { token: { id: string } }).token.id : newId();
})();

/** Answers seen, by status (printed with FUZZ_VERBOSE=1, to see how deep the generators reach). */
const statuses = new Map<number, number>();
afterAll(() => {
  if (process.env.FUZZ_VERBOSE)
    console.log("statuses:", Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])));
});

/** What a refused request must not change. */
const snapshot = async () => ({ stats: await store.stats(), nodes: await store.listNodes() });

const weirdStrings = fc.constantFrom(
  "",
  "\u0000",
  "a\u0000b",
  "\ud800",
  "x\udfffy",
  "\ufeff",
  "🙂".repeat(100),
  "%",
  "../../etc/passwd",
  "x".repeat(300),
  "FLEETLINK_E_",
);
const anyString = fc.oneof(weirdStrings, fc.string({ unit: "binary", maxLength: 30 }));
const hugeNumbers = fc.constantFrom(
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 53),
  1e308,
  -1e308,
  5e-324,
  0,
  -0,
  2 ** 31,
  2 ** 64,
);
const ids = fc.oneof(fc.constant(runId), fc.constant(node.id), fc.uuid(), fc.constant(newId()), anyString);
const scalar = fc.oneof(ids, hugeNumbers, fc.integer(), fc.boolean(), fc.constant(null), anyString);
const value: fc.Arbitrary<unknown> = fc.oneof(
  scalar,
  fc.jsonValue({ maxDepth: 3 }),
  fc.array(ids, { maxLength: 4 }),
  fc.dictionary(anyString, scalar, { maxKeys: 3 }),
);

const FIELDS = [
  "name",
  "heartbeatIntervalMs",
  "from",
  "to",
  "reason",
  "items",
  "ids",
  "instructionIds",
  "limit",
  "hosts",
  "standby",
  "id",
  "label",
  "ttlMs",
  "uses",
];
const validItem = () => ({ dst: node.id, method: "echo", ttlMs: 60_000, payload: null as unknown });
const rawItem = fc.record(
  {
    dst: fc.oneof(fc.constant(node.id), ids),
    method: fc.oneof(fc.constant("echo"), anyString),
    ttlMs: fc.oneof(fc.constant(60_000), hugeNumbers, fc.integer(), anyString),
    payload: value,
    id: ids,
    groupId: anyString,
    maxAttempts: fc.oneof(fc.integer(), hugeNumbers),
    holdWhileOffline: fc.oneof(fc.boolean(), scalar),
    extra: value,
  },
  { requiredKeys: [] },
);
/** A valid instruction with at most one field replaced or added: gets past the schema more often than not. */
const item = fc.oneof(
  rawItem,
  fc
    .tuple(fc.option(fc.tuple(fc.constantFrom(...Object.keys(validItem()), "extra"), value)), rawItem)
    .map(([bad, extra]) => ({
      ...validItem(),
      ...(bad ? { [bad[0]]: bad[1] } : { payload: extra.payload ?? null }),
    })),
);
const nest = (n: number, kind: number) =>
  kind === 0
    ? `${"[".repeat(n)}${"]".repeat(n)}`
    : kind === 1
      ? `${'{"a":'.repeat(n)}1${"}".repeat(n)}`
      : `{"items":[{"dst":"${node.id}","method":"echo","ttlMs":60000,"payload":${"[".repeat(n)}${"]".repeat(n)}}]}`;

/** Request bodies: none, random JSON, field-shaped objects with wrong types, deep nesting, huge numbers, non-JSON. */
const body: fc.Arbitrary<string | undefined> = fc.oneof(
  fc.constant(undefined),
  fc.constant("{}"),
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
  fc.dictionary(fc.constantFrom(...FIELDS), value, { maxKeys: 4 }).map((v) => JSON.stringify(v)),
  fc.array(item, { minLength: 0, maxLength: 3 }).map((items) => JSON.stringify({ items })),
  fc
    .record(
      { name: anyString, heartbeatIntervalMs: fc.oneof(hugeNumbers, fc.integer()) },
      { requiredKeys: [] },
    )
    .map((v) => JSON.stringify(v)),
  fc.tuple(fc.integer({ min: 1, max: 10_000 }), fc.integer({ min: 0, max: 2 })).map(([n, k]) => nest(n, k)),
  fc.constantFrom(
    '{"limit": 1e400}',
    '{"limit": 9007199254740993}',
    `{"items":[{"dst":"${node.id}","method":"echo","ttlMs":9007199254740993}]}`,
    `{"items":[{"dst":"${node.id}","method":"echo","ttlMs":1e308}]}`,
    `{"name":"x","heartbeatIntervalMs":1e400}`,
    `{"ids":["${runId}"],"ids":"dup"}`,
    '{"__proto__":{"admin":true},"name":"p"}',
    '{"constructor":{"prototype":{"x":1}}}',
  ),
  fc.constantFrom("{", "nul", "\u0000", "", "[1,]", "{'a':1}", '"unterminated', "1".repeat(5000), "\ud800"),
  fc.string({ unit: "binary", maxLength: 50 }),
);
const contentType = fc.oneof(
  { weight: 6, arbitrary: fc.constant("application/json") },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data",
      "application/json; charset=utf-16",
      "application/octet-stream",
      "application/jsonx",
      "*/*",
      "",
    ),
  },
);
// Mostly the right credentials, so that most requests get past authentication into validation and handlers.
const auth = fc.oneof(
  { weight: 5, arbitrary: fc.constant(`Bearer ${ADMIN}`) },
  { weight: 2, arbitrary: fc.constant(`Bearer ${ENROLL}`) },
  { weight: 1, arbitrary: fc.constant(NODE_AUTH) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      undefined,
      "Bearer",
      `Bearer  ${ADMIN}`,
      `bearer ${ADMIN}`,
      `Basic ${Buffer.from(`x:${ADMIN}`).toString("base64")}`,
      `Bearer ${node.id}.wrong`,
      `Bearer ${"x".repeat(5000)}`,
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme-ascii", maxLength: 40 }).map((s) => `Bearer ${s}`) },
);
const junkParam = fc.oneof(
  fc.uuid(),
  fc.constantFrom("0", "1", "-1", "999999", "1e3", "9".repeat(400)),
  fc.string({ unit: "binary", maxLength: 40 }).map((s) => encodeURIComponent(s)),
  fc.constantFrom(
    "",
    "%",
    "%00",
    "%zz",
    "..",
    "%2e%2e%2f",
    "null",
    "%ED%A0%80",
    "a".repeat(5000),
    "%F0%9F%99%82",
  ),
);
/** A path parameter: usually an id that exists (so the handler runs), otherwise junk. */
const paramValue = (name: string) =>
  fc.oneof(
    {
      weight: 3,
      arbitrary:
        name === "run"
          ? fc.constant(runId)
          : name === "node"
            ? fc.constantFrom(...pool.map((p) => p.node.id))
            : name === "token"
              ? fc.constant(tokenId)
              : fc.constantFrom("0", "1", "2"),
    },
    { weight: 2, arbitrary: junkParam },
  );
const METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];

interface Req {
  route: Route;
  otherMethod: string | null;
  /** Values for :run, :node, :token and :host. */
  params: [string, string, string, string];
  suffix: string;
  auth: string | undefined;
  body: string | undefined;
  contentType: string;
}

const request = (route: fc.Arbitrary<Route>): fc.Arbitrary<Req> =>
  fc.record({
    route,
    otherMethod: fc.oneof(
      { weight: 5, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: fc.constantFrom(...METHODS) },
    ),
    params: fc.tuple(paramValue("run"), paramValue("node"), paramValue("token"), paramValue("host")),
    suffix: fc.oneof(
      { weight: 8, arbitrary: fc.constant("") },
      {
        weight: 1,
        arbitrary: fc.constantFrom("/", "?x=1", "?limit=5&limit=6", "//", "/extra", "?%zz", "#f"),
      },
    ),
    auth,
    body,
    contentType,
  });

const junk = "not-a-param";

/** Sends one generated request and checks the hub's answer and the store. */
const check = async (r: Req) => {
  const [run, nodeParam, token, host] = r.params;
  const byName: Record<string, string> = { run, node: nodeParam, token, host };
  const path = r.route.path.replace(/:([a-z]+)/g, (_, n: string) => byName[n] ?? junk) + r.suffix;
  const method = r.otherMethod ?? r.route.method;
  const before = await snapshot();
  let res: Awaited<ReturnType<typeof inject>>;
  try {
    res = await inject(method, path, r.auth, r.body, r.contentType);
  } catch (e) {
    // The test client itself refused to build this request (an impossible header): nothing reached the hub.
    if (e instanceof TypeError) return;
    throw e;
  }
  statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
  const what = `${method} ${path.slice(0, 200)} → ${res.statusCode} ${res.body.slice(0, 300)}`;
  expect(res.statusCode, what).toBeLessThan(500);
  if (res.statusCode >= 400) {
    if (method !== "HEAD") {
      let b: unknown;
      try {
        b = res.json();
      } catch {
        b = res.body;
      }
      expect(b, what).toMatchObject({
        error: { code: expect.stringMatching(/^FLEETLINK_E_/), message: expect.any(String) },
      });
    }
    expect(await snapshot(), `a refused request changed the store: ${what}`).toEqual(before);
  } else if (path.includes("/checkpoints/") || path.includes("/activate")) {
    // An accepted checkpoint operation goes on in the background; let it start before the next snapshot.
    await new Promise((res) => setTimeout(res, 50));
  }
};

/** Runs per route: about 500 requests in all with the cross-route property and the stream fuzz. */
const FUZZ = { numRuns: 12 } as const;

describe("fuzz - HTTP routes", () => {
  test("fuzz - the hub registered the routes this suite knows about (and the checkpoint routes)", () => {
    const paths = routes.map((r) => `${r.method} ${r.path}`);
    for (const known of [
      "GET /healthz",
      "POST /v1/nodes/enroll",
      "POST /v1/runs/:run/instructions",
      "POST /v1/runs/:run/replies/claim",
      "PUT /v1/runs/:run/hosts",
      "POST /v1/runs/:run/checkpoints/push",
    ])
      expect(paths).toContain(known);
  });

  for (const route of routes)
    test(`fuzz - ${route.method} ${route.path}: no 5xx, refusals are typed and change nothing`, async () => {
      await fc.assert(
        fc.asyncProperty(request(fc.constant(route)), (r) => check(r)),
        FUZZ,
      );
    }, 60_000);

  test("fuzz - any route, any method, any junk path: no 5xx, refusals are typed and change nothing", async () => {
    const junkRoutes = fc.oneof(
      fc.constantFrom(...routes),
      fc
        .array(fc.oneof(fc.constantFrom("v1", "runs", "nodes", ":run", "stream", "..", ""), junkParam), {
          maxLength: 6,
        })
        .map((segs) => ({ method: "GET", path: `/${segs.join("/")}` })),
    );
    await fc.assert(
      fc.asyncProperty(request(junkRoutes), (r) => check(r)),
      { numRuns: 100 },
    );
  }, 60_000);
});

describe("fuzz - node stream", () => {
  let streamAuth = "";
  const open = () =>
    new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(`${url.replace(/^http/, "ws")}/v1/nodes/stream`, {
        headers: { authorization: streamAuth },
      });
      ws.on("error", reject);
      ws.once("open", () => resolve(ws));
    });
  /** Sends a request and waits for its answer; undefined if the stream closed first. */
  const call = (ws: WebSocket, frame: Record<string, unknown>, timeoutMs = 3000) =>
    new Promise<Record<string, unknown> | undefined>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no answer to ${frame.m} in ${timeoutMs} ms`)), timeoutMs);
      const done = (v: Record<string, unknown> | undefined) => {
        clearTimeout(t);
        resolve(v);
      };
      ws.on("message", (d) => {
        try {
          const f = JSON.parse(d.toString()) as Record<string, unknown>;
          if (f.id === frame.id) done(f);
        } catch {}
      });
      ws.once("close", () => done(undefined));
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
      else done(undefined);
    });

  const frame = fc.oneof(
    fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
    fc.string({ unit: "binary", maxLength: 100 }),
    fc
      .record(
        {
          t: fc.constantFrom("req", "res", "err", "evt", "x", ""),
          id: fc.oneof(fc.uuid(), anyString, fc.integer()),
          m: fc.oneof(
            fc.constantFrom("hello", "heartbeat", "reply", "instruction", "checkpoint.push"),
            anyString,
          ),
          b: fc.oneof(
            value,
            fc.record({ inflight: fc.oneof(fc.array(ids, { maxLength: 3 }), value) }, { requiredKeys: [] }),
            fc.record(
              {
                id: ids,
                runId: fc.oneof(fc.constant(runId), ids),
                replyTo: ids,
                payload: value,
                error: fc.oneof(
                  value,
                  fc.record({ code: anyString, message: anyString }, { requiredKeys: [] }),
                ),
              },
              { requiredKeys: [] },
            ),
          ),
          e: fc.oneof(
            value,
            fc.record({ code: anyString, message: anyString, field: value }, { requiredKeys: [] }),
          ),
        },
        { requiredKeys: ["t"] },
      )
      .map((v) => JSON.stringify(v)),
    fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
  );
  /** Node records, minus what a hello or heartbeat legitimately changes. */
  const settled = async () => {
    const s = await snapshot();
    return { stats: s.stats, nodes: s.nodes.map(({ onlineUntil: _, status: __, ...n }) => n) };
  };

  test("fuzz - random frames after a real hello: the hub stays up and the store changes only as a valid request would", async () => {
    // A node of its own (the HTTP fuzz may have unregistered the others). Its first hello makes it online;
    // from then on no frame this node can send may change the store.
    const own = await enrollNode("fuzz-stream-node");
    streamAuth = `Bearer ${own.node.id}.${own.credential}`;
    const first = await open();
    await call(first, { t: "req", id: newId(), m: "hello", b: { inflight: [] } });
    first.close();
    const before = await settled();
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 8 }), async (frames) => {
        const ws = await open();
        ws.on("error", () => {});
        const hello = await call(ws, { t: "req", id: newId(), m: "hello", b: { inflight: [] } });
        expect(hello?.t).toBe("res");
        for (const f of frames) ws.send(f);
        // A last request tells when the hub has dealt with everything before it (or closed the stream).
        await call(ws, { t: "req", id: newId(), m: "heartbeat" });
        ws.terminate();
        expect((await inject("GET", "/healthz")).statusCode).toBe(200);
        expect(await settled()).toEqual(before);
      }),
      { numRuns: 60 },
    );
  }, 60_000);
});
