// deploy/ cannot be built or started here (no image registry, no systemd as PID 1): what can be checked is. The
// compose file parses and is wired as documented, every flag and variable it, the Dockerfile or the units pass
// exists in the CLI, the example config files are accepted by the real CLI, and the units pass
// `systemd-analyze verify` (or, without it, parse as INI with the required sections).
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, test } from "vitest";
import { parse } from "yaml";
import { startCli } from "../helpers/procs.ts";
import { cliAll } from "./cli-run.ts";

const DEPLOY = join(import.meta.dirname, "../../deploy");
const read = (f: string) => readFileSync(join(DEPLOY, f), "utf8");
const UNITS = ["fleetlink-serve.service", "fleetlink-node.service"];

/** Long flags and `(env: …)` variables a command's --help lists. */
interface Help {
  flags: Set<string>;
  env: Set<string>;
}
const helps: Record<"serve" | "node", Help> = {} as never;
const parseHelp = (text: string): Help => ({
  flags: new Set([...text.matchAll(/(?:^|\s|,)(--[a-z][a-z-]*)/g)].map((m) => m[1]!)),
  env: new Set([...text.matchAll(/env:\s+(FLEETLINK_\w+)/g)].map((m) => m[1]!)),
});
/** The flags a command line uses (`--x` or `--x=…`). */
const flagsOf = (args: string[]) => args.filter((a) => a.startsWith("--")).map((a) => a.split("=")[0]!);

beforeAll(async () => {
  const [serve, node] = await cliAll([[["serve", "--help"]], [["node", "--help"]]]);
  helps.serve = parseHelp(serve!.stdout);
  helps.node = parseHelp(node!.stdout);
  expect(helps.serve.flags.has("--config")).toBe(true);
}, 30_000);

interface Service {
  image?: string;
  build?: { dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
}

describe("deploy/", () => {
  test("docker-compose.yml - PostgreSQL, two hub replicas, three nodes, each with a healthcheck; commands and variables exist in the CLI", () => {
    const doc = parse(read("docker-compose.yml"), { merge: true }) as { services: Record<string, Service> };
    const s = doc.services;
    expect(Object.keys(s).sort()).toEqual(["hub1", "hub2", "node1", "node2", "node3", "postgres"]);
    for (const [name, svc] of Object.entries(s))
      expect(svc.healthcheck?.test.length, name).toBeGreaterThan(1);
    expect(s.postgres!.healthcheck!.test).toContain("pg_isready");
    for (const h of ["hub1", "hub2"]) {
      const hub = s[h]!;
      expect(hub.command![0]).toBe("serve");
      expect(hub.environment!.FLEETLINK_DB).toMatch(/^postgres:\/\/.*@postgres:5432\//);
      expect(hub.depends_on!.postgres!.condition).toBe("service_healthy");
      expect(hub.healthcheck!.test.join(" ")).toMatch(/\/readyz/);
      for (const flag of flagsOf(hub.command!)) expect(helps.serve.flags, `${h}: ${flag}`).toContain(flag);
      for (const v of Object.keys(hub.environment!)) expect(helps.serve.env, `${h}: ${v}`).toContain(v);
    }
    for (const n of ["node1", "node2", "node3"]) {
      const node = s[n]!;
      expect(node.command![0]).toBe("node");
      const hubs = node.command![node.command!.indexOf("--hub") + 1]!.split(",");
      expect(hubs.sort()).toEqual(["http://hub1:7070", "http://hub2:7070"]);
      expect(node.depends_on!.hub1!.condition).toBe("service_healthy");
      for (const flag of flagsOf(node.command!)) expect(helps.node.flags, `${n}: ${flag}`).toContain(flag);
      for (const v of Object.keys(node.environment!)) expect(helps.node.env, `${n}: ${v}`).toContain(v);
    }
    const names = ["node1", "node2", "node3"].map(
      (n) => s[n]!.command![s[n]!.command!.indexOf("--name") + 1],
    );
    expect(new Set(names).size).toBe(3);
    expect(existsSync(join(DEPLOY, "handlers.mjs"))).toBe(true);
    expect(s.hub1!.build!.dockerfile).toBe("deploy/Dockerfile");
  });

  test("Dockerfile - multi-stage on node:24-slim, npm ci, a build, a non-root user, a HEALTHCHECK on /healthz", () => {
    const df = read("Dockerfile");
    expect(df.match(/^FROM node:24-slim/gm)).toHaveLength(2);
    expect(df).toMatch(/^FROM node:24-slim AS build$/m);
    expect(df).toMatch(/^RUN npm ci /m);
    expect(df).toMatch(/npm run build && npm run build:web/);
    // The dashboard bundle lands where src/hub/dashboard.ts looks for it (web/dist beside dist/).
    expect(df).toMatch(/COPY --from=build \/src\/web\/dist \.\/web\/dist/);
    expect(
      JSON.parse(readFileSync(join(DEPLOY, "../package.json"), "utf8")).scripts["build:web"],
    ).toBeDefined();
    expect(df).toMatch(/COPY --from=build \/src\/dist/);
    const user = /^USER (\S+)$/m.exec(df)?.[1];
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^(root|0)$/);
    expect(df).toMatch(/^HEALTHCHECK .*\n?.*\/healthz/m);
    expect(df).toMatch(/^ENTRYPOINT \["node", "\/app\/dist\/cli\/main\.js"\]$/m);
    // The env the image sets must be variables serve reads.
    for (const v of df.match(/FLEETLINK_\w+(?==)/g) ?? []) expect(helps.serve.env, v).toContain(v);
  });

  test("systemd units - hardened, flags that exist, and systemd-analyze verify passes (INI check without it)", async () => {
    for (const unit of UNITS) {
      const text = read(unit);
      const sections = [...text.matchAll(/^\[(\w+)\]$/gm)].map((m) => m[1]);
      expect(sections, unit).toEqual(["Unit", "Service", "Install"]);
      for (const line of text.split("\n"))
        if (line.trim() && !line.startsWith("#") && !line.startsWith("["))
          expect(line, `${unit}: not key=value`).toMatch(/^[A-Z][A-Za-z]+=/);
      for (const want of [
        /^DynamicUser=yes$/m,
        /^NoNewPrivileges=yes$/m,
        /^ProtectSystem=strict$/m,
        /^ProtectHome=yes$/m,
        /^StateDirectory=\S+$/m,
        /^CapabilityBoundingSet=$/m,
        /^Restart=on-failure$/m,
      ])
        expect(text, `${unit}: ${want}`).toMatch(want);
      const exec = /^ExecStart=(.*)$/m.exec(text)![1]!.split(/\s+/);
      const cmd = exec[exec.indexOf("fleetlink") + 1] as "serve" | "node";
      for (const flag of flagsOf(exec)) expect(helps[cmd].flags, `${unit}: ${flag}`).toContain(flag);
    }
    const analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find(existsSync);
    if (analyze) {
      // verify exits 0 on unknown keys but says so: any line naming our units is a failure.
      const r = await promisify(execFile)(analyze, ["verify", ...UNITS.map((u) => join(DEPLOY, u))]).catch(
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
      const said = `${r.stdout}${r.stderr}`;
      expect(
        said.split("\n").filter((l) => l.includes("fleetlink-")),
        said,
      ).toEqual([]);
      expect((r as { code?: number }).code ?? 0, said).toBe(0);
    }
  }, 30_000);

  test("hub.toml and node.toml - every key is a flag of its command, and serve starts from the example file", async () => {
    for (const [f, cmd] of [
      ["hub.toml", "serve"],
      ["node.toml", "node"],
    ] as const) {
      const keys = [...read(f).matchAll(/^([a-z_]+) = /gm)].map((m) => m[1]!);
      expect(keys.length).toBeGreaterThan(5);
      for (const k of keys) expect(helps[cmd].flags, `${f}: ${k}`).toContain(`--${k.replaceAll("_", "-")}`);
    }
    // docs/cli.md's full examples too: every key a flag (commented-out keys included).
    const docs = readFileSync(join(DEPLOY, "../docs/cli.md"), "utf8");
    const blocks = [...docs.matchAll(/```toml\n([\s\S]*?)```/g)].map((m) => m[1]!);
    const hubDoc = blocks.find((b) => b.startsWith("db = "));
    const nodeDoc = blocks.find((b) => b.startsWith("hub = [") && b.includes("name = "));
    for (const [b, cmd] of [
      [hubDoc, "serve"],
      [nodeDoc, "node"],
    ] as const) {
      expect(b, `docs/cli.md: the ${cmd} example`).toBeDefined();
      const keys = [...b!.matchAll(/^(?:# )?([a-z_]+) = /gm)].map((m) => m[1]!);
      // A negated flag (--no-static-enroll-token) has the positive key.
      for (const k of keys) {
        const flag = `--${k.replaceAll("_", "-")}`;
        const known = helps[cmd].flags.has(flag) || helps[cmd].flags.has(flag.replace("--", "--no-"));
        expect(known, `docs/cli.md ${cmd}: ${k}`).toBe(true);
      }
    }
    // The file's database, address and token files do not exist here: flags override them, the rest applies.
    const hub = await startCli(
      [
        "serve",
        "--config",
        join(DEPLOY, "hub.toml"),
        "--db",
        "memory:",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--token",
        "t-admin",
        "--enroll-token",
        "t-enroll",
      ],
      /listening on (\S+)/,
    );
    try {
      const res = await fetch(`${hub.value}/healthz`);
      expect(res.status).toBe(200);
    } finally {
      await hub.kill();
    }
  }, 30_000);
});
