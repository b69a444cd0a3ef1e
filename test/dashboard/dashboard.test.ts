// End to end in a real browser: Debian's Chromium driven by playwright-core against a real hub on SQLite, real
// node agents over WebSockets and the SDK. Screenshots for the README go to docs/img/.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Configuration } from "../../src/coordinator/configuration.ts";
import type { RunHandle } from "../../src/coordinator/run.ts";
import { createHub } from "../../src/hub/server.ts";
import { openStore } from "../../src/store/open.ts";
import { startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

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
  // The first test's run and configuration (alpha and beta), used again by the pages' tests.
  let run: RunHandle;
  let cfg: Configuration;
  /** Lets beta's `hold` handler answer. */
  let releaseHold: () => void = () => {};
  /** Lets beta's `slow` handler answer. */
  let releaseSlow: () => void = () => {};

  beforeAll(async () => {
    if (!existsSync(CHROMIUM))
      throw new Error(
        `Chromium is missing at ${CHROMIUM}: the dashboard test needs it. Install it with ` +
          "`apt-get update && apt-get install -y chromium` (Debian's package; .ci/run does this in CI).",
      );
    await ensureBundle();
    // Rate charts sampled every 200 ms instead of 10 s, so a test sees them move.
    f = await startFleet({ dashboardRateIntervalMs: 200 });
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
    const hold = new Promise<void>((r) => {
      releaseHold = r;
    });
    const slow = new Promise<void>((r) => {
      releaseSlow = r;
    });
    const boom = (p: unknown) => {
      throw new Error(`disk full while writing ${JSON.stringify(p).length} bytes`);
    };
    await f.node("alpha", { add, boom, hold: () => "alpha done" });
    // beta answers only when the test says so, so the page can be seen with the call half done.
    await f.node("beta", {
      add: async (p) => {
        await gate;
        return add(p);
      },
      boom,
      hold: async () => {
        await hold;
        return "beta done";
      },
      slow: async () => {
        await slow;
        return "slow done";
      },
    });
    await page.waitForSelector("[data-testid=node-row][data-name=alpha][data-status=online]");
    await page.waitForSelector("[data-testid=node-row][data-name=beta][data-status=online]");
    await expect.poll(() => page.textContent("[data-testid=stat-online] .stat-value")).toBe("2");
    await page.screenshot({ path: join(shots, "dashboard-overview.png") });

    const fleet = await f.fleet();
    run = await fleet.createRun();
    cfg = run.configuration(await fleet.nodes());
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

  /** The call link of the newest call of `method` on the run page. */
  const openCall = async (method: string) => {
    await page.goto(`${f.url}/#/runs/${run.id}`);
    const link = page.locator("[data-testid=call-link]", { hasText: method }).first();
    await link.click();
    await page.waitForSelector("[data-testid=call-nodes]");
    return page.evaluate(() => (globalThis as unknown as { location: { hash: string } }).location.hash);
  };
  const row = (node: string) => page.locator(`[data-testid=call-node-row][data-node=${node}]`);

  it("dashboard - call page: each node's error message inline, payload cut to 4 KiB with its size, attempts, latency", async () => {
    // A payload of ~6 KB: shown in part, with its full size.
    const text = "x".repeat(6000);
    await expect(cfg.call("boom", { text }, { quorum: "all", timeoutMs: 10_000 })).rejects.toThrow();
    const hash = await openCall("boom");
    expect(hash).toMatch(new RegExp(`^#/runs/${run.id}/calls/[0-9a-f-]{36}$`));
    for (const node of ["alpha", "beta"]) {
      await page.waitForSelector(`[data-testid=call-node-row][data-node=${node}][data-state=error]`);
      expect(await row(node).locator("[data-testid=error-message]").textContent()).toBe(
        "disk full while writing 6011 bytes",
      );
      // The short code, as the run page and the CLI show it; the full one on hover.
      const code = row(node).locator("[data-testid=error-code]");
      expect(await code.textContent()).toBe("HANDLER_FAILED");
      expect(await code.getAttribute("title")).toBe("FLEETLINK_E_HANDLER_FAILED");
      // Ended: just the attempts made (no "1/3" suggesting more are coming).
      expect(await row(node).locator("[data-testid=attempts]").textContent()).toBe("1");
      expect(await row(node).locator("[data-testid=latency]").textContent()).toMatch(/^\d+ ms$|s$/);
      expect(await row(node).locator("[data-testid=delivered]").textContent()).toMatch(
        /^delivered \+\d+ ms$/,
      );
      const payload = row(node).locator("[data-testid=payload]");
      expect(await payload.getAttribute("data-bytes")).toBe("6011");
      expect(await payload.locator("[data-testid=payload-truncated]").textContent()).toContain(
        "5.9 KiB in all",
      );
      expect(((await payload.locator("pre").textContent()) ?? "").length).toBeLessThanOrEqual(4096);
    }
    expect(await page.textContent("[data-testid=call-summary]")).toContain("0 ok, 2 failed, 0 open");
    // Nothing left to withdraw.
    expect(await page.locator("[data-testid=withdraw]").isDisabled()).toBe(true);
    await page.screenshot({ path: join(shots, "dashboard-call.png"), fullPage: true });

    // The overview lists the newest failures fleet-wide: node, method, short code, message, a link to the call.
    await page.goto(`${f.url}/#/`);
    const failure = page.locator("[data-testid=failure]").first();
    await expect.poll(() => failure.getAttribute("data-method")).toBe("boom");
    expect(await failure.locator("[data-testid=failure-code]").textContent()).toBe("HANDLER_FAILED");
    expect(await failure.textContent()).toContain("disk full while writing 6011 bytes");
    expect(await failure.locator("[data-testid=node-name]").textContent()).toMatch(
      /^(alpha|beta) \(…[0-9a-f]{8}\)$/,
    );
    expect(await page.locator("[data-testid=failure][data-method=nope]").count()).toBe(2);
    await failure.locator("[data-testid=failure-call]").click();
    await expect
      .poll(() =>
        page.evaluate(() => (globalThis as unknown as { location: { hash: string } }).location.hash),
      )
      .toBe(hash);
    await page.waitForSelector("[data-testid=call-nodes]");

    // The quorum call of the first test: results shown decoded, first and last reply latency in the run view.
    await openCall("add");
    // A short payload keeps a sensible width: JSON is not broken inside its numbers ("400" is not "40" / "0").
    const payloadWidth = await row("alpha")
      .locator("[data-testid=payload]")
      .evaluate((e) => e.clientWidth);
    expect(payloadWidth).toBeGreaterThanOrEqual(200);
    expect(await row("alpha").locator("[data-testid=result] pre").textContent()).toBe("5");
    expect(await row("alpha").locator("[data-testid=payload] pre").textContent()).toBe(
      '{\n  "a": 2,\n  "b": 3\n}',
    );
    await page.goto(`${f.url}/#/runs/${run.id}`);
    const latency = page
      .locator("[data-testid=call]", { hasText: "add" })
      .locator("[data-testid=call-latency]");
    expect(await latency.textContent()).toMatch(/^first \d+(\.\d)? m?s · last \d+(\.\d)? m?s$/);
    // The run view filters its calls by method, node and outcome.
    await page.fill("[data-testid=call-filters] input[name=method]", "boom");
    await expect.poll(() => page.locator("[data-testid=call]").count()).toBe(1);
    await page.fill("[data-testid=call-filters] input[name=method]", "");
    await page.selectOption("[data-testid=call-filters] select[name=outcome]", "ok");
    await expect
      .poll(() =>
        page.locator("[data-testid=call]").evaluateAll((cs) => cs.map((c) => c.getAttribute("data-state"))),
      )
      .toEqual(["done"]);
    expect(pageErrors).toEqual([]);
  });

  it("dashboard - node page: version, replica, in flight while a handler runs; withdraw cancels the call's open instruction", async () => {
    const beta = (await f.store.listNodes()).find((n) => n.name === "beta")!;
    const held = cfg.call("hold", null, { quorum: "all", timeoutMs: 30_000 }).then(
      () => "answered",
      (e: Error) => e.message,
    );
    // In flight: beta holds its instruction. The overview's column and the node page say 1.
    await page.goto(`${f.url}/#/`);
    await expect
      .poll(() => page.textContent("[data-testid=node-row][data-name=beta] [data-testid=node-inflight]"))
      .toBe("1");
    await expect
      .poll(() => page.textContent("[data-testid=node-row][data-name=alpha] [data-testid=node-inflight]"))
      .toBe("0");
    expect(
      await page.textContent("[data-testid=node-row][data-name=beta] [data-testid=node-version]"),
    ).toMatch(/^fleetlink-ts\/\d+\.\d+\.\d+/);
    await page.click("[data-testid=node-row][data-name=beta] a");
    await expect
      .poll(() =>
        page.evaluate(() => (globalThis as unknown as { location: { hash: string } }).location.hash),
      )
      .toBe(`#/nodes/${beta.id}`);
    await expect.poll(() => page.textContent("[data-testid=node-inflight]")).toBe("1");
    expect(await page.textContent("[data-testid=node-version]")).toMatch(/^fleetlink-ts\//);
    expect(await page.getAttribute("[data-testid=node-replica]", "title")).toBe(f.hub.id);
    expect(await page.textContent("[data-testid=node-heartbeat]")).toMatch(/ago$/);
    expect(await page.getAttribute("[data-testid=node-heartbeat] time", "title")).toMatch(
      /^\d{4}-\d\d-\d\dT/,
    );
    // Its recent instructions: every call of the run, newest first; filtered on the server by outcome and method.
    await expect
      .poll(() =>
        page
          .locator("[data-testid=node-instruction]")
          .evaluateAll((r) => r.map((x) => x.getAttribute("data-method"))),
      )
      .toEqual(["hold", "boom", "nope", "add"]);
    await page.screenshot({ path: join(shots, "dashboard-node.png"), fullPage: true });
    await page.selectOption("[data-testid=node-filters] select[name=outcome]", "error");
    await expect
      .poll(() =>
        page
          .locator("[data-testid=node-instruction]")
          .evaluateAll((r) => r.map((x) => x.getAttribute("data-method"))),
      )
      .toEqual(["boom", "nope"]);
    const boomRow = page.locator("[data-testid=node-instruction][data-method=boom]");
    expect(await boomRow.textContent()).toContain("disk full");
    expect(await boomRow.locator("[data-testid=error-code]").textContent()).toBe("HANDLER_FAILED");
    expect(await boomRow.locator("[data-testid=attempts]").textContent()).toBe("1");
    // Text filters apply as you type (no Enter), after a pause.
    await page.fill("[data-testid=node-filters] input[name=method]", "nope");
    await expect
      .poll(() =>
        page
          .locator("[data-testid=node-instruction]")
          .evaluateAll((r) => r.map((x) => x.getAttribute("data-method"))),
      )
      .toEqual(["nope"]);
    await page.selectOption("[data-testid=node-filters] select[name=outcome]", "pending");
    await expect.poll(() => page.textContent("main")).toContain("No instructions match");
    // Every filter uses every field's current value: text typed, then the outcome picked at once, both apply.
    await page.selectOption("[data-testid=node-filters] select[name=outcome]", "");
    await page.fill("[data-testid=node-filters] input[name=method]", "hold");
    await page.selectOption("[data-testid=node-filters] select[name=outcome]", "error");
    await expect.poll(() => page.textContent("main")).toContain("No instructions match");
    await page.selectOption("[data-testid=node-filters] select[name=outcome]", "pending");
    await expect
      .poll(() =>
        page
          .locator("[data-testid=node-instruction]")
          .evaluateAll((r) => r.map((x) => x.getAttribute("data-method"))),
      )
      .toEqual(["hold"]);
    // Still open: its attempts of the most allowed.
    expect(await page.textContent("[data-testid=node-instruction] [data-testid=attempts]")).toBe("1/3");
    // A run id applies once whole (the hub matches runs exactly); a partial one is named, not sent.
    const runField = "[data-testid=node-filters] input[name=run]";
    await page.fill(runField, run.id.slice(0, 8));
    await page.waitForSelector("[data-testid=node-partial-run]");
    expect(await page.locator("[data-testid=node-error]").count()).toBe(0);
    await page.fill(runField, run.id);
    await page.waitForSelector("[data-testid=node-partial-run]", { state: "detached" });
    await page.fill(runField, "00000000-0000-7000-8000-000000000000");
    await expect.poll(() => page.textContent("main")).toContain("No instructions match");
    await page.fill(runField, "");
    await page.waitForSelector("[data-testid=node-instruction][data-method=hold]");

    // From the node's row to the call: withdraw asks first; Cancel does nothing.
    await page.click("[data-testid=node-instruction][data-method=hold] a >> nth=0");
    await page.waitForSelector("[data-testid=call-node-row][data-node=beta][data-state=leased]");
    await page.click("[data-testid=withdraw]");
    await page.waitForSelector("[data-testid=confirm]");
    await page.click("[data-testid=confirm-no]");
    expect(await page.locator("[data-testid=confirm]").count()).toBe(0);
    expect((await f.store.nodeInstructions(beta.id, { method: "hold" }))[0]!.state).toBe("leased");
    await page.click("[data-testid=withdraw]");
    await page.click("[data-testid=confirm-yes]");
    await expect.poll(() => page.textContent("[data-testid=withdraw-said]")).toBe("withdrew 1 instruction");
    await page.waitForSelector("[data-testid=call-node-row][data-node=beta][data-state=error]");
    expect(await row("beta").locator("[data-testid=error-code]").textContent()).toBe("CANCELLED");
    expect(await row("beta").locator("[data-testid=error-code]").getAttribute("title")).toBe(
      "FLEETLINK_E_CANCELLED",
    );
    expect(await row("alpha").locator("[data-testid=result] pre").textContent()).toBe('"alpha done"');
    // beta's handler finishing later changes nothing: its late reply is refused, the outcome stays CANCELLED.
    // (The coordinator is not told: a withdrawal's CANCELLED reply is stored already claimed, as for the SDK's
    // own cancel, so its call waits for its timeout; docs/dashboard.md says so.)
    releaseHold();
    await new Promise((r) => setTimeout(r, 300));
    const [beta0] = await f.store.nodeInstructions(beta.id, { method: "hold" });
    expect(beta0!.reply!.error!.code).toBe("FLEETLINK_E_CANCELLED");
    void held;
    expect(pageErrors).toEqual([]);
  });

  it("dashboard - finish run asks first and changes the run's status; unregister removes the node", async () => {
    await page.goto(`${f.url}/#/runs/${run.id}`);
    await page.click("[data-testid=finish-run]");
    await page.click("[data-testid=confirm-yes]");
    await page.waitForSelector("[data-testid=finish-run]", { state: "detached" });
    expect((await f.store.getRun(run.id)).status).toBe("finished");
    // 21 newer runs push it out of the feed's 20: the status filter asks the hub, and finds it still.
    for (let i = 0; i < 21; i++) await f.store.createRun();
    await page.click("header nav a[href='#/runs']");
    await expect.poll(() => page.locator("[data-testid=run-row]").count()).toBe(20);
    expect(await page.locator(`[data-testid=run-row] td[title='${run.id}']`).count()).toBe(0);
    await page.selectOption("[data-testid=run-filters] select[name=status]", "finished");
    await expect
      .poll(() =>
        page.locator("[data-testid=run-row]").evaluateAll((r) => r.map((x) => x.getAttribute("data-status"))),
      )
      .toEqual(["finished"]);
    expect(await page.locator(`[data-testid=run-row] td[title='${run.id}']`).count()).toBe(1);

    const gamma = await f.node("gamma", {});
    await page.goto(`${f.url}/#/`);
    await page.waitForSelector("[data-testid=node-row][data-name=gamma][data-status=online]");
    await page.fill("[data-testid=node-list-filters] input[name=node]", "gam");
    await expect
      .poll(() =>
        page.locator("[data-testid=node-row]").evaluateAll((r) => r.map((x) => x.getAttribute("data-name"))),
      )
      .toEqual(["gamma"]);
    await page.click("[data-testid=node-row][data-name=gamma] a");
    await page.click("[data-testid=unregister]");
    expect(await page.textContent("[data-testid=confirm]")).toContain("Unregister gamma?");
    await page.click("[data-testid=confirm-yes]");
    const id = (await f.store.listNodes()).find((n) => n.name === "gamma")!.id;
    // The hub's answer is enough: the page shows the node unregistered at once, not at the feed's 2 s refresh
    // (an unregistration raises no store event), and no longer "online until".
    await page.waitForSelector("[data-testid=unregistered-note]", { timeout: 1000 });
    expect(await page.textContent("[data-testid=node-title]")).toContain("unregistered");
    expect(await page.textContent("[data-testid=node-online-until]")).toContain("unregistered");
    expect(await page.locator("main [data-testid=unregister]").count()).toBe(0);
    expect((await f.store.getNode(id)).status).toBe("unregistered");
    await gamma.stop({ timeoutMs: 1000 });
    await page.goto(`${f.url}/#/`);
    await page.waitForSelector("[data-testid=node-row][data-name=alpha]");
    // Elsewhere the feed shows it at its next refresh (every 2 s): the overview drops the node.
    await expect
      .poll(() => page.locator("[data-testid=node-row][data-name=gamma]").count(), { timeout: 5000 })
      .toBe(0);
    expect(pageErrors).toEqual([]);
  });

  it("dashboard - rate charts are fleet-wide: replica B shows the work done through replica A", async () => {
    const storeB = await openStore(`sqlite:${join(f.dir, "fleet.db")}`);
    const b = createHub({
      store: storeB,
      token: TOKEN,
      enrollToken: ENROLL_TOKEN,
      sweepIntervalMs: 50,
      dashboardRateIntervalMs: 200,
    });
    try {
      const urlB = await b.listen();
      // Work through replica A only, while B samples.
      const fleet = await f.fleet();
      const r = await fleet.createRun();
      const alphaOnly = r.configuration((await fleet.nodes()).filter((n) => n.name === "alpha"));
      // Bursts of growing size with pauses, so the charts have a shape; a failing call every other burst.
      for (let k = 1; k <= 6; k++) {
        await Promise.all(
          Array.from({ length: 4 * k }, (_, i) =>
            alphaOnly.call("add", { a: i, b: k }, { quorum: "all", timeoutMs: 10_000 }),
          ),
        );
        if (k % 2 === 0)
          await expect(alphaOnly.call("boom", null, { quorum: "all", timeoutMs: 10_000 })).rejects.toThrow();
        await new Promise((res) => setTimeout(res, 450));
      }
      await page.goto(`${urlB}/#/`);
      await page.evaluate(() => sessionStorage.clear());
      await page.reload();
      await page.fill("input[name=token]", TOKEN);
      await page.click("button[type=submit]");
      await page.waitForSelector("[data-testid=charts]");
      const max = async (id: string) =>
        Number(await page.getAttribute(`[data-testid=chart-${id}]`, "data-max"));
      await expect.poll(() => max("pushes"), { timeout: 8000 }).toBeGreaterThan(0);
      expect(await max("replies")).toBeGreaterThan(0);
      expect(await max("errors")).toBeGreaterThan(0);
      expect(Number(await page.getAttribute("[data-testid=chart-replies]", "data-samples"))).toBeGreaterThan(
        1,
      );
      // Replica B's page shows alpha on replica A, which B does not hold.
      await page.waitForSelector("[data-testid=node-row][data-name=alpha]");
      // Each replica with the address it listens on, from its presence record (A's written within 5 s).
      await expect
        .poll(async () => (await page.locator(".replica-address").allTextContents()).sort(), {
          timeout: 8000,
        })
        .toEqual([f.url, urlB].sort());
      // beta works on a call held on replica A: B shows it in flight, from A's presence record (within 5 s).
      const betaOnly = r.configuration((await fleet.nodes()).filter((n) => n.name === "beta"));
      const slowCall = betaOnly.call("slow", null, { quorum: "all", timeoutMs: 20_000 });
      await expect
        .poll(() => page.textContent("[data-testid=node-row][data-name=beta] [data-testid=node-inflight]"), {
          timeout: 8000,
        })
        .toBe("1");
      releaseSlow();
      expect([...(await slowCall).replies.values()]).toEqual(["slow done"]);
      await expect
        .poll(() => page.textContent("[data-testid=node-row][data-name=beta] [data-testid=node-inflight]"), {
          timeout: 8000,
        })
        .toBe("0");
      expect(
        await page.getAttribute("[data-testid=node-row][data-name=alpha] td:nth-child(4)", "title"),
      ).toBe(f.hub.id);
      await page.screenshot({ path: join(shots, "dashboard-charts.png") });
      await page.goto(`${f.url}/#/`);
    } finally {
      await b.close();
      await storeB.close();
    }
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

    // The node page: Approve and Unregister disabled, saying why; no rate charts (they add up every tenant).
    await page.click("[data-testid=node-row][data-name=waiting-a] a");
    for (const id of ["approve", "unregister"]) {
      const b = page.locator(`main [data-testid=${id}]`);
      expect(await b.isDisabled()).toBe(true);
      expect(await b.getAttribute("title")).toBe("needs role admin");
    }
    await page.goto(`${f.url}/#/`);
    await page.waitForSelector("[data-testid=charts-hidden]");
    // A run of its tenant: Finish is disabled (it needs admin or coordinator), and the hub refuses it.
    const runA = await f.store.createRun({ tenant: "team-a" });
    await page.goto(`${f.url}/#/runs/${runA.id}`);
    const finish = page.locator("[data-testid=finish-run]");
    expect(await finish.isDisabled()).toBe(true);
    expect(await finish.getAttribute("title")).toBe("needs role admin or coordinator");
    // Said beside the button too, not only on hover.
    expect(await page.textContent("[data-testid=finish-run-needs]")).toBe("needs role admin or coordinator");
    const finishing = await page.evaluate(
      async ([id, secret]) => {
        const r = await fetch(`/v1/runs/${id}/status`, {
          method: "POST",
          headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
          body: JSON.stringify({ from: "pending", to: "finished" }),
        });
        return r.status;
      },
      [runA.id, reader.secret] as const,
    );
    expect(finishing).toBe(403);
    const unregistering = await page.evaluate(
      async ([id, secret]) =>
        (await fetch(`/v1/nodes/${id}`, { method: "DELETE", headers: { authorization: `Bearer ${secret}` } }))
          .status,
      [waiting.id, reader.secret] as const,
    );
    expect(unregistering).toBe(403);
    expect((await f.store.getRun(runA.id)).status).toBe("pending");
    expect((await f.store.getNode(waiting.id)).status).not.toBe("unregistered");

    // A coordinator may finish runs and withdraw calls, not unregister nodes.
    const coordinator = await token({ role: "coordinator", tenant: "team-a" });
    await login(coordinator.secret);
    await page.goto(`${f.url}/#/runs/${runA.id}`);
    expect(await page.locator("[data-testid=finish-run]").isDisabled()).toBe(false);
    await page.goto(`${f.url}/#/nodes/${waiting.id}`);
    const unregister = page.locator("main [data-testid=unregister]");
    expect(await unregister.isDisabled()).toBe(true);
    expect(await unregister.getAttribute("title")).toBe("needs role admin");
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
    const approved = page.locator("[data-testid=audit-row][data-action='node.approve'][data-outcome=ok]");
    await approved.first().waitFor();
    // Who: the token's label (from the token listing), its id on hover; the node approved by name.
    await expect
      .poll(() => approved.first().locator("[data-testid=audit-who]").textContent())
      .toBe("team a admin");
    expect(await approved.first().locator("[data-testid=audit-who]").getAttribute("title")).toBe(admin.id);
    expect(await approved.first().locator("[data-testid=node-name]").textContent()).toMatch(
      /^waiting-a \(…[0-9a-f]{8}\)$/,
    );
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

  it("dashboard - checkpoints name each host and standby as 'name (…last 8 hex)', the id on hover", async () => {
    const c = await startCheckpointFleet();
    try {
      const [h0, spare] = await Promise.all(["h0", "spare"].map((n) => c.node(n)));
      const run = await c.fleet.createRun();
      await c.fleet.checkpoints.assign(
        run,
        [h0!.agent.nodeId!],
        [{ hostIdx: 0, nodeId: spare!.agent.nodeId! }],
      );
      await page.goto(`${c.url}/#/checkpoints`);
      await page.evaluate(() => sessionStorage.clear());
      await page.reload();
      await page.fill("input[name=token]", TOKEN);
      await page.click("button[type=submit]");
      const host = page.locator(
        "[data-testid=checkpoint] [data-testid=checkpoint-host] [data-testid=node-name]",
      );
      await expect.poll(() => host.textContent()).toBe(`h0 (…${h0!.agent.nodeId!.slice(-8)})`);
      expect(await host.getAttribute("title")).toBe(h0!.agent.nodeId);
      expect(await page.textContent("[data-testid=checkpoint]")).toContain(
        `spare (…${spare!.agent.nodeId!.slice(-8)})`,
      );
    } finally {
      await c.close();
    }
    expect(pageErrors).toEqual([]);
  });
});
