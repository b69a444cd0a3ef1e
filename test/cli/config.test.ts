// Configuration: the CLI's profiles (config.toml) and `serve --config` / `node --config` files. Precedence is
// flag > environment > file > default, and every mistake in a file exits 1 naming the file and the key.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.ts";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";
import { FIXTURE_HANDLERS, startCli } from "../helpers/procs.ts";
import { cliAll, failedWith } from "./cli-run.ts";

const dir = mkdtempSync(join(tmpdir(), "fleetlink-config-"));
let f: TestFleet;
beforeAll(async () => {
  f = await startFleet({ storeUrl: "memory:" });
  await f.node("cfg-node", { echo: (p: unknown) => p });
}, 30_000);
afterAll(async () => {
  await f?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Writes a file (mode 600 unless told) and returns its path. */
const file = (name: string, text: string, mode = 0o600) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
};

describe("CLI profiles", () => {
  test("profiles - flag > env > profile > default for hub and token; default_profile, --profile, XDG_CONFIG_HOME, token_file", async () => {
    file("admin.token", `${TOKEN}\n`);
    const cfg = file(
      "config.toml",
      `default_profile = "local"
[profiles.local]
hub = "${f.url}"
token_file = "admin.token"   # relative to this file

[profiles.wrong-token]
hub = ["${f.url}"]
token = "not-the-token"

[profiles.nowhere]
hub = "http://127.0.0.1:1"
token = "${TOKEN}"
`,
    );
    const xdg = join(dir, "xdg");
    mkdirSync(join(xdg, "fleetlink"), { recursive: true });
    writeFileSync(
      join(xdg, "fleetlink", "config.toml"),
      `[profiles.x]\nhub = "${f.url}"\ntoken = "${TOKEN}"\n`,
    );
    chmodSync(join(xdg, "fleetlink", "config.toml"), 0o600);
    const env = { FLEETLINK_CONFIG: cfg };
    const list = ["nodes", "list", "--json"];
    const [byDefault, wrongProfile, envBeatsProfile, flagBeatsEnv, flagHubBeatsProfile, byXdg, envProfile] =
      await cliAll([
        [list, { env }],
        [[...list, "--profile", "wrong-token"], { env }],
        [list, { env: { ...env, FLEETLINK_TOKEN: "env-wrong" } }],
        [
          [...list, "--token", TOKEN],
          { env: { ...env, FLEETLINK_TOKEN: "env-wrong", FLEETLINK_PROFILE: "wrong-token" } },
        ],
        [[...list, "--profile", "nowhere", "--hub", f.url], { env }],
        [[...list, "--profile", "x"], { env: { XDG_CONFIG_HOME: xdg } }],
        [list, { env: { ...env, FLEETLINK_PROFILE: "nowhere", FLEETLINK_HUB: f.url } }],
      ]);
    const names = (r: { stdout: string }) =>
      (JSON.parse(r.stdout) as { nodes: { name: string }[] }).nodes.map((n) => n.name);
    expect(names(byDefault)).toEqual(["cfg-node"]);
    expect(failedWith(wrongProfile, "UNAUTHORIZED"), wrongProfile.stderr).toBe(true);
    expect(failedWith(envBeatsProfile, "UNAUTHORIZED"), envBeatsProfile.stderr).toBe(true);
    expect(names(flagBeatsEnv)).toEqual(["cfg-node"]);
    expect(names(flagHubBeatsProfile)).toEqual(["cfg-node"]);
    expect(names(byXdg)).toEqual(["cfg-node"]);
    expect(names(envProfile)).toEqual(["cfg-node"]);
  }, 60_000);

  test("profiles - a bad config file is refused naming the file and the key; one holding a token must be mode 600", async () => {
    const open = file("open.toml", `[profiles.p]\nhub = "${f.url}"\ntoken = "${TOKEN}"\n`, 0o644);
    const unknown = file("unknown.toml", `[profiles.p]\nhub = "${f.url}"\ntokn = "x"\n`);
    const badHub = file("badhub.toml", `[profiles.p]\nhub = "ftp://x"\ntoken = "t"\n`);
    const syntax = file("syntax.toml", `[profiles.p\nhub = 1\n`);
    const badDefault = file("default.toml", `default_profile = "gone"\n[profiles.p]\nhub = "${f.url}"\n`);
    const list = ["nodes", "list"];
    const [r1, r2, r3, r4, r5, r6] = await cliAll([
      [[...list, "--profile", "p"], { env: { FLEETLINK_CONFIG: open } }],
      [[...list, "--profile", "p"], { env: { FLEETLINK_CONFIG: unknown } }],
      [[...list, "--profile", "p"], { env: { FLEETLINK_CONFIG: badHub } }],
      [list, { env: { FLEETLINK_CONFIG: syntax } }],
      [list, { env: { FLEETLINK_CONFIG: badDefault } }],
      [[...list, "--profile", "p"], { env: { FLEETLINK_CONFIG: join(dir, "absent.toml") } }],
    ]);
    for (const r of [r1, r2, r3, r4, r5, r6]) expect(r.code).toBe(ExitCode.usage);
    expect(r1.stderr).toContain(
      `${open}: profiles.p.token: holds a secret but the file is readable by others (mode 644)`,
    );
    expect(r2.stderr).toContain(`${unknown}: profiles.p.tokn: unknown key`);
    expect(r3.stderr).toContain(`${badHub}: profiles.p.hub: must be an http(s):// URL`);
    expect(r4.stderr).toMatch(new RegExp(`${syntax}: line \\d+, column \\d+`));
    expect(r5.stderr).toContain(`${badDefault}: default_profile: no profile "gone" (profiles: p)`);
    expect(r6.stderr).toContain("--profile p: there is no config file");
  }, 60_000);
});

describe("serve --config and node --config", () => {
  test("config files - unknown keys, kebab keys, bad values, wrong types and open secrets exit 1 naming file and key", async () => {
    const cases: [string, RegExp][] = [
      ['db = "memory:"\nprot = 7070\n', /: prot: unknown key; known keys: db, host, port/],
      ['max-payload = "1MiB"\n', /: max-payload: unknown key \(keys are snake_case: max_payload\)/],
      ['max_payload = "lots"\n', /: max_payload: "lots": "lots" is not a size like 4MiB/],
      ["port = 70000\n", /: port: 70000: must be an integer from 0 to 65535/],
      ['enroll_approval = "sometimes"\n', /: enroll_approval: "sometimes" is not one of auto, manual/],
      ['static_enroll_token = "no"\n', /: static_enroll_token: must be true or false, not "no"/],
      ['log_level = "loud"\n', /: log_level: "loud" is not one of fatal, error/],
      ["[db]\nurl = 1\n", /: db: must be a string, not a table/],
    ];
    const files = cases.map(([text], i) => file(`hub-${i}.toml`, text));
    const open = file("hub-open.toml", 'token = "a-secret"\n', 0o644);
    const results = await cliAll([
      ...files.map((p): [string[]] => [["serve", "--config", p]]),
      [["serve", "--config", open]],
      [
        [
          "node",
          "--config",
          file("node-bad.toml", 'hub = "http://127.0.0.1:1"\nname = "n"\nhandler = "x.mjs"\n'),
        ],
      ],
      [["node", "--config", file("node-none.toml", 'handlers = "x.mjs"\n')]],
    ]);
    for (const [i, [, want]] of cases.entries()) {
      expect(results[i]!.code, cases[i]![0]).toBe(ExitCode.usage);
      expect(results[i]!.stderr, cases[i]![0]).toContain(files[i]);
      expect(results[i]!.stderr, cases[i]![0]).toMatch(want);
      expect(results[i]!.stdout).not.toMatch(/listening on/);
    }
    const [rOpen, rNode, rNone] = results.slice(cases.length);
    expect(rOpen!.stderr).toContain(
      `${open}: token: holds a secret but the file is readable by others (mode 644)`,
    );
    expect(rNode!.stderr).toMatch(/node-bad\.toml: handler: unknown key; known keys: hub, name, handlers/);
    expect(rNone!.stderr).toContain("--hub is required (a flag, or its key in --config)");
  }, 60_000);

  test("serve --config - the file's values apply; env beats the file, a flag beats both; node --config joins the hub", async () => {
    const cfg = file(
      "hub.toml",
      `db = "memory:"
host = "256.0.0.1"           # unusable: the --host flag must win
port = 0
token = "from-file"
enroll_token = "enroll-from-file"
enroll_approval = "manual"
log_level = "silent"
`,
    );
    const hub = await startCli(["serve", "--config", cfg, "--host", "127.0.0.1"], /listening on (\S+)/, {
      FLEETLINK_TOKEN: "from-env",
    });
    try {
      const nodes = (token: string) =>
        fetch(`${hub.value}/v1/nodes`, { headers: { authorization: `Bearer ${token}` } }).then(
          (r) => r.status,
        );
      expect(await nodes("from-env")).toBe(200);
      expect(await nodes("from-file")).toBe(401);
      const nodeCfg = file(
        "node.toml",
        `hub = ["${hub.value}"]
name = "from-config"
handlers = "${FIXTURE_HANDLERS}"
token = "enroll-from-file"
identity = "${join(dir, "node-id.json")}"
heartbeat = 500
log_format = "json"
`,
      );
      // enroll_approval = "manual" came from the file: the node waits for approval.
      const node = startCli(["node", "--config", nodeCfg], /online as (\S+)/);
      let id: string | undefined;
      for (let i = 0; i < 100 && !id; i++) {
        const r = (await (
          await fetch(`${hub.value}/v1/nodes`, { headers: { authorization: "Bearer from-env" } })
        ).json()) as { nodes: { id: string; name: string; approved: boolean }[] };
        id = r.nodes.find((n) => n.name === "from-config" && !n.approved)?.id;
        if (!id) await new Promise((res) => setTimeout(res, 100));
      }
      expect(id).toBeDefined();
      await fetch(`${hub.value}/v1/nodes/${id}/approve`, {
        method: "POST",
        headers: { authorization: "Bearer from-env" },
      });
      const proc = await node;
      try {
        expect(proc.value).toBe(id);
        // The agent logs through pino: one JSON object per line on stderr, its status changes among them.
        await new Promise((res) => setTimeout(res, 200));
        const logs = proc
          .output()
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map((l) => JSON.parse(l) as { node?: string; state?: string; level: number });
        // (Whether it logged `pending` depends on whether it tried to connect before the approval.)
        expect(logs.some((l) => l.node === "from-config" && l.state === "connecting")).toBe(true);
        expect(logs.some((l) => l.state === "online" && l.level === 30)).toBe(true);
      } finally {
        await proc.kill();
      }
    } finally {
      await hub.kill();
    }
  }, 60_000);
});
