// The install line of the docs and the systemd units (`npm install -g fleetlink`), done with this checkout's own
// package: `npm pack` (its `prepare` builds dist/ and web/dist/) from a copy of the checkout, the tarball
// installed into a temporary prefix (dependencies from the npm cache, --prefer-offline), then the installed
// `fleetlink`: --version, and a `serve` on a temporary SQLite file that answers /healthz, serves the dashboard
// and the OpenAPI document, is read by the installed CLI's `status`, and stops on SIGTERM with 0.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { describePg, dropSchema, pgSchemaUrl } from "./helpers/postgres.ts";

const ROOT = join(import.meta.dirname, "..");
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  version: string;
  license: string;
  repository: { url: string };
  homepage: string;
  bugs: { url: string };
};
const work = mkdtempSync(join(tmpdir(), "fleetlink-pack-"));
// The installed bin's `#!/usr/bin/env node` finds this Node.js (24, the one running the test) first.
const env = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH}` };
const children: ChildProcess[] = [];
/** The installed `fleetlink`, once the install test has run. */
let bin: string | undefined;

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

const run = (
  cmd: string,
  args: string[],
  o: { cwd?: string; timeoutMs: number },
): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { cwd: o.cwd, env, timeout: o.timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr }),
    );
  });

const freePort = async () => {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
};

/** The checkout as `git` sees it (tracked and new files, nothing ignored): dist/ and web/dist/ are not in it. */
const copyCheckout = async (to: string) => {
  const ls = await run("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: ROOT,
    timeoutMs: 30_000,
  });
  expect(ls.code, ls.stderr).toBe(0);
  for (const f of ls.stdout.split("\0").filter(Boolean)) {
    if (!existsSync(join(ROOT, f))) continue; // deleted, not yet committed
    mkdirSync(dirname(join(to, f)), { recursive: true });
    cpSync(join(ROOT, f), join(to, f));
  }
  // The build tools (tsc, vite) of this checkout; the copy builds its own dist/ and web/dist/.
  symlinkSync(join(ROOT, "node_modules"), join(to, "node_modules"), "dir");
};

describe("packaging", () => {
  test("package.json - license has its LICENSE file, repository, homepage and bugs, a changelog", () => {
    expect(pkg.license).toBe("Apache-2.0");
    const license = readFileSync(join(ROOT, "LICENSE"), "utf8");
    expect(license).toMatch(/^\s*Apache License\s+Version 2\.0, January 2004/);
    expect(license).toContain("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION");
    expect(license).toContain("END OF TERMS AND CONDITIONS");
    expect(pkg.repository.url).toMatch(/^git\+https:\/\/github\.com\/[\w-]+\/[\w-]+\.git$/);
    const repo = pkg.repository.url.replace(/^git\+/, "").replace(/\.git$/, "");
    expect(pkg.homepage).toBe(`${repo}#readme`);
    expect(pkg.bugs.url).toBe(`${repo}/issues`);
    const changelog = readFileSync(join(ROOT, "CHANGELOG.md"), "utf8");
    expect(changelog).toMatch(/^# Changelog/);
    expect(changelog).toContain("## [Unreleased]");
    expect(changelog).toContain(`## [${pkg.version}]`);
    // The systemd units link the same repository.
    for (const unit of ["fleetlink-serve.service", "fleetlink-node.service"])
      expect(readFileSync(join(ROOT, "deploy", unit), "utf8")).toContain(`Documentation=${repo}/`);
  });

  test("npm pack, npm install -g --prefix, then the installed fleetlink: --version and a serve that answers /healthz", async () => {
    const t0 = Date.now();
    const src = join(work, "checkout");
    await copyCheckout(src);
    const packed = await run("npm", ["pack", "--json", "--pack-destination", work], {
      cwd: src,
      timeoutMs: 150_000,
    });
    expect(packed.code, packed.stderr.slice(-2000)).toBe(0);
    // `prepare` prints its build's output before npm's JSON.
    const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf("[\n"))) as {
      filename: string;
      files: { path: string }[];
    }[];
    const files = info[0]!.files.map((f) => f.path);
    for (const f of [
      "package.json",
      "LICENSE",
      "README.md",
      "CHANGELOG.md",
      "dist/cli/main.js",
      "dist/index.js",
      "dist/index.d.ts",
      "web/dist/index.html",
      "deploy/fleetlink-serve.service",
      "deploy/fleetlink-node.service",
      "deploy/hub.toml",
      "deploy/node.toml",
      "deploy/grafana/fleetlink-dashboard.json",
      "deploy/prometheus/alerts.yml",
    ])
      expect(files, f).toContain(f);
    expect(files.filter((f) => /^(src|test|bench|scripts|clients)\//.test(f))).toEqual([]);
    const packMs = Date.now() - t0;

    const prefix = join(work, "prefix");
    const installed = await run(
      "npm",
      [
        "install",
        "--global",
        "--prefix",
        prefix,
        join(work, info[0]!.filename),
        // The optional peer dependency for a PostgreSQL store, as the systemd unit's install line gives it.
        "pg",
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
      ],
      { timeoutMs: 180_000 },
    );
    expect(installed.code, installed.stderr.slice(-2000)).toBe(0);
    bin = join(prefix, "bin", "fleetlink");
    const installMs = Date.now() - t0 - packMs;

    const version = await run(bin, ["--version"], { timeoutMs: 20_000 });
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout.trim()).toBe(pkg.version);

    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const token = "packaging-admin-token";
    const hub = spawn(
      bin,
      [
        "serve",
        "--port",
        String(port),
        "--db",
        `sqlite:${join(work, "fleet.db")}`,
        "--token",
        token,
        "--enroll-token",
        "packaging-enroll-token",
      ],
      { env, stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(hub);
    let log = "";
    hub.stdout!.on("data", (d) => (log += d));
    hub.stderr!.on("data", (d) => (log += d));
    const started = Date.now();
    let health: Response | undefined;
    while (Date.now() - started < 20_000 && hub.exitCode === null) {
      health = await fetch(`${url}/healthz`).catch(() => undefined);
      if (health?.ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(health?.status, log.slice(-2000)).toBe(200);
    const startMs = Date.now() - started;
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    // The dashboard (web/dist) and the OpenAPI document come from the installed package.
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<html/i);
    const doc = await fetch(`${url}/openapi.json`, { headers: { authorization: `Bearer ${token}` } });
    expect(((await doc.json()) as { info: { version: string } }).info.version).toBe(pkg.version);
    const status = await run(bin, ["status", "--hub", url, "--token", token, "--json"], {
      timeoutMs: 20_000,
    });
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ cli: pkg.version, replicas: [{ url, ready: true }] });

    const exited = new Promise<number | null>((r) => hub.once("exit", (code) => r(code)));
    const stopAt = Date.now();
    hub.kill("SIGTERM");
    expect(await exited).toBe(0);
    const stopMs = Date.now() - stopAt;
    expect(stopMs).toBeLessThan(5_000);
    process.stdout.write(
      `packaging: pack ${packMs} ms, install ${installMs} ms, serve healthy in ${startMs} ms, stopped in ${stopMs} ms\n`,
    );
  }, 400_000);
});

describePg("packaging - PostgreSQL", () => {
  test("the installed fleetlink finds pg installed beside it (npm install -g fleetlink pg): store migrate and stats", async () => {
    expect(bin, "the install test ran first").toBeDefined();
    const { url, schema } = pgSchemaUrl("packaging");
    try {
      const migrate = await run(bin!, ["store", "migrate", "--db", url], { timeoutMs: 30_000 });
      expect(migrate.code, migrate.stderr).toBe(0);
      const stats = await run(bin!, ["store", "stats", "--db", url], { timeoutMs: 30_000 });
      expect(stats.code, stats.stderr).toBe(0);
      expect(JSON.parse(stats.stdout)).toMatchObject({ runs: { pending: 0 } });
    } finally {
      await dropSchema(schema);
    }
  }, 60_000);
});
