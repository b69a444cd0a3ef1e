// Every exit status of docs/cli.md, each provoked for real: the CLI as an OS process against a real hub (a
// SQLite store, node agents over WebSocket), a port nothing listens on, a hub whose PostgreSQL is cut off by a
// proxy, a web server that is not a hub, and a Maelstrom run of a broken node. The table in the docs and ExitCode agree.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ExitCode, type ExitCodeName, exitCodeByKind, exitCodeOf } from "../../src/cli/exit-codes.ts";
import { ErrorCodes, FleetlinkError } from "../../src/protocol/errors.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";
import { describePg, dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";
import { startProxy } from "../helpers/proxy.ts";
import { type CliResult, cli, cliAll } from "./cli-run.ts";

let f: TestFleet;
let hub: string[];
let deadPort: number;
let notAHub: Server;
let notAHubUrl: string;

const freePort = async () => {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
};

beforeAll(async () => {
  f = await startFleet();
  await f.node("alpha", { echo: (p: unknown) => p });
  await f.node("beta", {
    echo: () => {
      throw new Error("refuses");
    },
  });
  hub = ["--hub", f.url, "--token", TOKEN];
  deadPort = await freePort();
  notAHub = createHttpServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<html><body>It works!</body></html>");
  });
  await new Promise<void>((r) => notAHub.listen(0, "127.0.0.1", r));
  notAHubUrl = `http://127.0.0.1:${(notAHub.address() as { port: number }).port}`;
}, 30_000);

afterAll(async () => {
  await f?.close();
  await new Promise((r) => notAHub?.close(r));
});

const expectExit = (r: CliResult, name: ExitCodeName, what: string) =>
  expect(r.code, `${what}: ${r.stderr}${r.stdout}`.slice(0, 600)).toBe(ExitCode[name]);

describe("fleetlink exit codes", () => {
  test("0 ok, 64 usage, 3 auth, 5 not found, 6 conflict, 7 incomplete - each from a real hub", async () => {
    const ok = await cli(["runs", "list", ...hub, "--json"]);
    expectExit(ok, "ok", "runs list");
    const run = await f.fleet().then((fl) => fl.createRun());
    const [
      list,
      help,
      version,
      noCommand,
      badFlag,
      missingArg,
      badValue,
      badPayload,
      noToken,
      wrongToken,
      enrollAsAdmin,
      nodeMissing,
      runMissing,
      firstFinish,
      quorumMissed,
      quorumMet,
      noScheme,
      nodeNoScheme,
    ] = await cliAll([
      [["nodes", "list", ...hub]],
      [["--help"]],
      [["--version"]],
      [[]],
      [["nodes", "list", "--bogus", ...hub]],
      [["call", ...hub]],
      [["runs", "list", "--limit", "many", ...hub]],
      [["call", "echo", "{oops", "--all", ...hub]],
      [["nodes", "list", "--hub", f.url]],
      [["nodes", "list", "--hub", f.url, "--token", "wrong"]],
      [["nodes", "list", "--hub", f.url, "--token", ENROLL_TOKEN]],
      [["nodes", "show", "nobody", ...hub]],
      [["runs", "show", randomUUID(), ...hub]],
      [["runs", "finish", run.id, ...hub]],
      [["call", "echo", "1", "--nodes", "alpha,beta", "--quorum", "all", "--timeout", "10s", ...hub]],
      [["call", "echo", "1", "--nodes", "alpha,beta", "--quorum", "first", "--timeout", "10s", ...hub]],
      [["nodes", "list", "--hub", f.url.replace(/^http:\/\//, ""), "--token", "x"]],
      [
        [
          "node",
          "--hub",
          `${f.url},${f.url.replace(/^http:\/\//, "")}`,
          "--token",
          ENROLL_TOKEN,
          "--name",
          "n",
          "--handlers",
          "examples/conformance-handlers.mjs",
        ],
      ],
    ]);
    expectExit(list, "ok", "nodes list");
    expectExit(help, "ok", "--help");
    expectExit(version, "ok", "--version");
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync("package.json", "utf8")).version);
    expectExit(quorumMet, "ok", "call, quorum first");

    for (const [r, what] of [
      [noCommand, "no command"],
      [badFlag, "unknown flag"],
      [missingArg, "missing argument"],
      [badValue, "bad flag value"],
      [badPayload, "payload not JSON"],
      [noToken, "no token"],
      [noScheme, "--hub without a scheme"],
      [nodeNoScheme, "node --hub without a scheme"],
    ] as const)
      expectExit(r, "usage", what);
    expect(badFlag.stderr).toMatch(/unknown option '--bogus'/);
    expect(badPayload.stderr).toMatch(/^fleetlink: FLEETLINK_E_INVALID_ARGUMENT: payload: not JSON/m);
    expect(noToken.stderr).toMatch(/^fleetlink: the admin token is needed/m);
    for (const r of [noScheme, nodeNoScheme])
      expect(r.stderr).toMatch(
        /--hub: "127\.0\.0\.1:\d+" is not an http:\/\/ or https:\/\/ URL \(did you mean http:\/\/127\.0\.0\.1:\d+\?\)/,
      );

    expectExit(wrongToken, "auth", "wrong token");
    expect(wrongToken.stderr).toMatch(/FLEETLINK_E_UNAUTHORIZED/);
    expectExit(enrollAsAdmin, "auth", "enrollment token on an admin route");
    expect(enrollAsAdmin.stderr).toMatch(/FLEETLINK_E_FORBIDDEN/);
    expectExit(nodeMissing, "notFound", "nodes show nobody");
    expect(nodeMissing.stderr).toMatch(/FLEETLINK_E_NODE_NOT_FOUND/);
    expectExit(runMissing, "notFound", "runs show <unknown id>");
    expect(runMissing.stderr).toMatch(/FLEETLINK_E_RUN_NOT_FOUND/);

    expectExit(firstFinish, "ok", "runs finish");
    const again = await cli(["runs", "finish", run.id, ...hub]);
    expectExit(again, "conflict", "runs finish, twice");
    expect(again.stderr).toMatch(/FLEETLINK_E_INVALID_TRANSITION/);

    expectExit(quorumMissed, "incomplete", "call, quorum all, one handler throws");
    expect(quorumMissed.stderr).toMatch(
      /^fleetlink: FLEETLINK_E_INCOMPLETE_CALL: quorum all not met \(1 reply, 1 failed/m,
    );
  }, 60_000);

  test("4 unavailable - no hub on the port, a hub that never answers, status with no ready replica; bounded", async () => {
    // Accepts connections and never answers: the client's request timeout (5 s a try) has to end it.
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const silentUrl = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
    try {
      const t0 = Date.now();
      const [refused, statusDown, mute] = await cliAll([
        [["nodes", "list", "--hub", `http://127.0.0.1:${deadPort}`, "--token", TOKEN]],
        [["status", "--hub", `http://127.0.0.1:${deadPort}`, "--token", TOKEN]],
        [["runs", "list", "--hub", silentUrl, "--token", TOKEN], { timeoutMs: 40_000 }],
      ]);
      expectExit(refused, "unavailable", "connection refused");
      expect(refused.stderr).toMatch(/FLEETLINK_E_HUB_UNAVAILABLE: .*ECONNREFUSED/);
      expectExit(statusDown, "unavailable", "status, hub down");
      expectExit(mute, "unavailable", "hub never answers");
      expect(mute.stderr).toMatch(/FLEETLINK_E_HUB_UNAVAILABLE: .*did not answer/);
      // Measured: ~11 s (two tries of 5 s) for the silent hub; a refusal is not waited out.
      expect(Date.now() - t0).toBeLessThan(25_000);
    } finally {
      silent.close();
    }
  }, 60_000);

  test("1 internal - a --hub that is a web server, not a hub: unexpected answer, no code of ours", async () => {
    const r = await cli(["nodes", "list", "--hub", notAHubUrl, "--token", TOKEN]);
    expectExit(r, "internal", "web server as hub");
    expect(r.stderr).toMatch(/^fleetlink: /m);
  });

  test("2 maelstrom - an invalid history (a node that writes garbage on stdout) is 2, a valid one 0", async () => {
    const node = `"${process.execPath}" "${join(import.meta.dirname, "../fixtures/maelstrom/garbage.ts")}"`;
    const out = join(f.dir, "maelstrom");
    const args = (bin: string, o: string) => [
      "maelstrom",
      "test",
      "-w",
      "echo",
      "--bin",
      bin,
      "--node-count",
      "1",
      "--time-limit",
      "1.5",
      "--rate",
      "10",
      "--recovery",
      "0",
      "--init-timeout",
      "10",
      "--out",
      o,
    ];
    const [invalid, valid] = await cliAll([
      [args(node, `${out}-bad`), { timeoutMs: 30_000 }],
      [
        args(
          `"${process.execPath}" "${join(import.meta.dirname, "../../src/maelstrom/main.ts")}" echo`,
          `${out}-ok`,
        ),
        { timeoutMs: 30_000 },
      ],
    ]);
    expectExit(invalid, "invalidHistory", "maelstrom, broken node");
    expect(invalid.stdout).toMatch(/^INVALID: echo/m);
    expectExit(valid, "ok", "maelstrom, our echo node");
  }, 60_000);

  test("one mapping - every error kind has a status; unknown codes go by HTTP status; sockets and commander", () => {
    for (const kind of Object.keys(ErrorCodes) as (keyof typeof ErrorCodes)[])
      expect(exitCodeOf(new FleetlinkError(kind)), kind).toBe(ExitCode[exitCodeByKind[kind]]);
    const wire = (code: string, status: number) => Object.assign(new Error("x"), { code, status });
    expect(exitCodeOf(wire("FLEETLINK_E_TENANT_NOT_FOUND", 404))).toBe(ExitCode.notFound);
    expect(exitCodeOf(wire("FLEETLINK_E_ROLE_REQUIRED", 403))).toBe(ExitCode.auth);
    expect(exitCodeOf(wire("FLEETLINK_E_SOMETHING", 409))).toBe(ExitCode.conflict);
    expect(exitCodeOf(wire("FLEETLINK_E_SOMETHING", 503))).toBe(ExitCode.unavailable);
    expect(exitCodeOf(wire("FLEETLINK_E_SOMETHING", 422))).toBe(ExitCode.usage);
    expect(exitCodeOf(wire("FLEETLINK_E_SOMETHING", 500))).toBe(ExitCode.internal);
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    expect(exitCodeOf(new TypeError("fetch failed", { cause: refused }))).toBe(ExitCode.unavailable);
    expect(exitCodeOf(new DOMException("timed out", "TimeoutError"))).toBe(ExitCode.unavailable);
    expect(exitCodeOf(new TypeError("x is undefined"))).toBe(ExitCode.internal);
    expect(exitCodeOf("a string")).toBe(ExitCode.internal);
  });

  test("docs/cli.md - the exit status table lists every ExitCode, by number and name, and nothing else", () => {
    const doc = readFileSync(join(import.meta.dirname, "../../docs/cli.md"), "utf8");
    const section = doc.slice(doc.indexOf("## Exit status"));
    const rows = [...section.matchAll(/^\| (\d+) \| `(\w+)` \|/gm)].map((m) => [m[2], Number(m[1])]);
    expect(Object.fromEntries(rows)).toEqual(ExitCode);
    for (const kind of Object.keys(ErrorCodes)) expect(section, kind).toContain(kind);
  });
});

describePg("fleetlink exit codes - PostgreSQL", () => {
  test("4 unavailable - a hub whose PostgreSQL refuses every connection answers STORE_UNAVAILABLE; bounded", async () => {
    const pg = new URL(PG_URL!);
    const proxy = await startProxy({ host: pg.hostname, port: Number(pg.port || 5432) });
    const { url, schema } = pgSchemaUrl("exitcodes");
    const u = new URL(url);
    u.host = new URL(proxy.url).host;
    const cut = await startFleet({ storeUrl: u.toString() });
    try {
      expectExit(
        await cli(["runs", "list", "--hub", cut.url, "--token", TOKEN]),
        "ok",
        "runs list, store up",
      );
      proxy.set("drop");
      const t0 = Date.now();
      const r = await cli(["runs", "list", "--hub", cut.url, "--token", TOKEN], { timeoutMs: 30_000 });
      expectExit(r, "unavailable", "store cut off");
      expect(r.stderr).toMatch(/FLEETLINK_E_STORE_UNAVAILABLE/);
      expect(Date.now() - t0).toBeLessThan(20_000);
    } finally {
      proxy.set("pass");
      await cut.close();
      await proxy.close();
      await dropSchema(schema);
    }
  }, 60_000);
});
