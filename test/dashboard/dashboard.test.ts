// End to end in a real browser: Debian's Chromium driven by playwright-core against a real hub on SQLite, real
// node agents over WebSockets and the SDK. Screenshots for the README go to docs/img/.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

const CHROMIUM = "/usr/bin/chromium";
const repo = fileURLToPath(new URL("../../", import.meta.url));
const shots = join(repo, "docs", "img");

/** The bundle the hub serves; built here when missing, so the test also runs without `npm run build:web`. */
const ensureBundle = async () => {
  if (existsSync(join(repo, "web", "dist", "index.html"))) return;
  const { build } = await import("vite");
  await build({ configFile: join(repo, "web", "vite.config.ts"), logLevel: "error" });
};

describe("dashboard in headless Chromium", () => {
  let f: TestFleet;
  let ctx: BrowserContext;
  let page: Page;
  let profile: string;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM))
      throw new Error(
        `Chromium is missing at ${CHROMIUM}: the dashboard test needs it. Install it with ` +
          "`apt-get update && apt-get install -y chromium` (Debian's package; .ci/run does this in CI).",
      );
    await ensureBundle();
    f = await startFleet();
    profile = mkdtempSync(join(tmpdir(), "fleetlink-chromium-"));
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 800 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.on("pageerror", (e) => pageErrors.push(e.message));
    page.setDefaultTimeout(8000);
    mkdirSync(shots, { recursive: true });
  });

  afterAll(async () => {
    await ctx?.close();
    await f?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  it("dashboard - log in, a node appears when its agent starts, a quorum call completes live", async () => {
    await page.goto(f.url);

    // A wrong token is refused and not kept.
    await page.fill("input[name=token]", "not-the-token");
    await page.click("button[type=submit]");
    await expect.poll(() => page.textContent("[data-testid=login-error]")).toContain("Refused");
    expect(await page.evaluate(() => sessionStorage.getItem("fleetlink.token"))).toBeNull();

    await page.fill("input[name=token]", TOKEN);
    await page.click("button[type=submit]");
    await page.waitForSelector("[data-testid=feed-state][data-state=live]");
    await expect.poll(() => page.textContent("[data-testid=stat-online] .stat-value")).toBe("0");
    expect(await page.textContent("main")).toContain("No nodes yet");

    const add = (p: unknown) => (p as { a: number; b: number }).a + (p as { a: number; b: number }).b;
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    await f.node("alpha", { add });
    // beta answers only when the test says so, so the page can be seen with the call half done.
    await f.node("beta", {
      add: async (p) => {
        await gate;
        return add(p);
      },
    });
    await page.waitForSelector("[data-testid=node-row][data-name=alpha][data-status=online]");
    await page.waitForSelector("[data-testid=node-row][data-name=beta][data-status=online]");
    await expect.poll(() => page.textContent("[data-testid=stat-online] .stat-value")).toBe("2");
    await page.screenshot({ path: join(shots, "dashboard-overview.png") });

    const fleet = await f.fleet();
    const run = await fleet.createRun();
    const cfg = run.configuration(await fleet.nodes());
    await page.goto(`${f.url}/#/runs/${run.id}`);
    await expect.poll(() => page.textContent("main")).toContain("No calls in this run yet");

    const call = cfg.call("add", { a: 2, b: 3 }, { quorum: "all", timeoutMs: 10_000 });
    // alpha has replied, beta holds its instruction: the run view shows the call in progress.
    await page.waitForSelector("[data-testid=call][data-state=running]");
    await page.waitForSelector("[data-testid=call-node][data-state=ok]");
    expect(await page.textContent("[data-testid=call-progress]")).toBe("1/2 replied");
    release();
    const result = await call;
    expect([...result.replies.values()]).toEqual([5, 5]);
    await page.waitForSelector("[data-testid=call][data-state=done]");
    expect(await page.textContent("[data-testid=call-progress]")).toBe("2/2 replied");
    expect(await page.locator("[data-testid=call-node][data-state=ok]").count()).toBe(2);

    // A call whose handlers are missing on every node ends in error replies, shown with their code.
    await expect(cfg.call("nope", null, { quorum: "all", timeoutMs: 10_000 })).rejects.toThrow();
    await page.waitForSelector("[data-testid=call][data-state=failed]");
    expect(await page.locator("[data-testid=call-node][data-state=error]").count()).toBe(2);
    await page.screenshot({ path: join(shots, "dashboard-run.png"), fullPage: true });

    // The runs list counts the run's two calls: one ok, one failed; its first call started it.
    await page.click("header nav a[href='#/runs']");
    const row = page.locator("[data-testid=run-row]").first();
    await expect
      .poll(() => row.locator("td").allTextContents())
      .toEqual([run.id.slice(-8), "running", expect.any(String), "2", "1", "1", "0"]);

    await page.click("header nav a[href='#/checkpoints']");
    await expect.poll(() => page.textContent("main")).toContain("This hub has no checkpoint store");
    expect(pageErrors).toEqual([]);
  });

  it("dashboard - the feed refuses a wrong token, and the page logs out when the hub refuses its token", async () => {
    const res = await fetch(`${f.url}/v1/events`, { headers: { authorization: "Bearer wrong" } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("FLEETLINK_E_UNAUTHORIZED");

    // A token kept from an earlier session that the hub no longer takes: back to the login form, saying why.
    await page.evaluate(() => sessionStorage.setItem("fleetlink.token", "stale-token"));
    await page.goto(`${f.url}/#/`);
    await page.reload();
    await expect.poll(() => page.textContent("[data-testid=login-error]")).toContain("refused the token");
    expect(await page.evaluate(() => sessionStorage.getItem("fleetlink.token"))).toBeNull();
  });

  /** A stored token made through the API (as `fleetlink tokens create` does). */
  const token = async (body: Record<string, unknown>): Promise<{ id: string; secret: string }> => {
    const res = await fetch(`${f.url}/v1/tokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(201);
    const b = (await res.json()) as { token: { id: string }; secret: string };
    return { id: b.token.id, secret: b.secret };
  };
  const login = async (secret: string) => {
    await page.goto(`${f.url}/#/`);
    await page.evaluate(() => sessionStorage.clear());
    await page.reload();
    await page.fill("input[name=token]", secret);
    await page.click("button[type=submit]");
    await page.waitForSelector("[data-testid=feed-state][data-state=live]");
  };

  it("dashboard - a reader sees who it is and its tenant's nodes; Approve is disabled (needs role admin) and the hub refuses it anyway", async () => {
    // Two nodes waiting for approval, one per tenant.
    const waiting = await f.store.registerNode({
      name: "waiting-a",
      heartbeatIntervalMs: 1000,
      approved: false,
      tenant: "team-a",
    });
    await f.store.registerNode({
      name: "hidden-b",
      heartbeatIntervalMs: 1000,
      approved: false,
      tenant: "team-b",
    });
    const reader = await token({ role: "reader", tenant: "team-a", label: "ops viewer" });
    await login(reader.secret);

    const who = page.locator("[data-testid=whoami]");
    await expect.poll(() => who.getAttribute("data-role")).toBe("reader");
    expect(await who.getAttribute("data-tenant")).toBe("team-a");
    expect(await who.textContent()).toContain("ops viewer");
    await page.waitForSelector("[data-testid=node-row][data-name=waiting-a][data-status=pending]");
    const approve = page.locator("[data-testid=node-row][data-name=waiting-a] [data-testid=approve]");
    expect(await approve.isDisabled()).toBe(true);
    expect(await approve.getAttribute("title")).toBe("needs role admin");
    // Only its tenant: not team-b's node, not the default tenant's alpha and beta; no audit tab.
    expect(
      await page
        .locator("[data-testid=node-row]")
        .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-name"))),
    ).toEqual(["waiting-a"]);
    expect(await page.locator("header nav a[href='#/audit']").count()).toBe(0);
    await page.screenshot({ path: join(shots, "dashboard-reader.png") });

    // A page that ignored the disabled button (or a script) gets 403 from the hub: the rule is the hub's.
    const refused = await page.evaluate(
      async ([id, secret]) => {
        const r = await fetch(`/v1/nodes/${id}/approve`, {
          method: "POST",
          headers: { authorization: `Bearer ${secret}` },
        });
        return { status: r.status, body: (await r.json()) as { error: { message: string } } };
      },
      [waiting.id, reader.secret] as const,
    );
    expect(refused.status).toBe(403);
    expect(refused.body.error.message).toMatch(/needs role admin/);
    expect((await f.store.getNode(waiting.id)).approved).toBe(false);
    expect(pageErrors).toEqual([]);
  });

  it("dashboard - a tenant-B reader sees no tenant-A node, and tenant A's run is not found", async () => {
    const reader = await token({ role: "reader", tenant: "team-b" });
    const runA = await f.store.createRun({ tenant: "team-a" });
    await login(reader.secret);
    await page.waitForSelector("[data-testid=node-row][data-name=hidden-b]");
    expect(
      await page
        .locator("[data-testid=node-row]")
        .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-name"))),
    ).toEqual(["hidden-b"]);
    const text = (await page.textContent("main")) ?? "";
    for (const name of ["waiting-a", "alpha", "beta"]) expect(text).not.toContain(name);
    await page.click("header nav a[href='#/runs']");
    await expect.poll(() => page.textContent("main")).toContain("No runs yet");
    // Opening tenant A's run by its id: the feed says not found, the token is kept.
    await page.goto(`${f.url}/#/runs/${runA.id}`);
    await page.waitForSelector("[data-testid=feed-state][data-state=refused]");
    expect(await page.textContent("[data-testid=feed-state]")).toContain(`no run ${runA.id}`);
    expect(await page.evaluate(() => sessionStorage.getItem("fleetlink.token"))).toBe(reader.secret);
    expect(pageErrors).toEqual([]);
  });

  it("dashboard - an admin approves from the page and reads the audit log, refusals included", async () => {
    const admin = await token({ role: "admin", tenant: "team-a", label: "team a admin" });
    await login(admin.secret);
    const approve = page.locator("[data-testid=node-row][data-name=waiting-a] [data-testid=approve]");
    expect(await approve.isDisabled()).toBe(false);
    await approve.click();
    await page.waitForSelector("[data-testid=node-row][data-name=waiting-a]:not([data-status=pending])");
    await page.click("header nav a[href='#/audit']");
    await page.waitForSelector("[data-testid=audit-row][data-action='node.approve'][data-outcome=ok]");
    // The reader's refused approval of the same tenant is there too; nothing of team-b or the default tenant.
    await page.waitForSelector("[data-testid=audit-row][data-outcome=refused]");
    const tenants = await page
      .locator("[data-testid=audit-row] td:nth-child(4)")
      .evaluateAll((cells) => [...new Set(cells.map((c) => c.textContent))]);
    expect(tenants).toEqual(["team-a"]);
    await page.screenshot({ path: join(shots, "dashboard-audit.png") });
    expect(pageErrors).toEqual([]);
  });

  it("dashboard - a token revoked while the page is open sends it back to the login form, saying why", async () => {
    const reader = await token({ role: "reader", tenant: "team-a" });
    await login(reader.secret);
    const del = await fetch(`${f.url}/v1/tokens/${reader.id}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(del.status).toBe(200);
    const t0 = performance.now();
    await expect
      .poll(() => page.textContent("[data-testid=login-error]"), { timeout: 5000 })
      .toContain("token revoked");
    // The feed checks its token every 2 s.
    expect(performance.now() - t0).toBeLessThan(4000);
    expect(await page.evaluate(() => sessionStorage.getItem("fleetlink.token"))).toBeNull();
    expect(pageErrors).toEqual([]);
  });
});
