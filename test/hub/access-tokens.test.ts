// Principal tokens through the hub: creation (bad input names the field, changes nothing), expiry by the store's
// clock, 403 messages naming the role needed, the metrics role, scoped admins, and the CLI's `tokens` command.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createHub, type Hub } from "../../src/hub/server.ts";
import { newId } from "../../src/protocol/ids.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";
import { cli, cliAll } from "../cli/cli-run.ts";

const ADMIN = "tokens-admin";
const ENROLL = "tokens-enroll";

describe("principal tokens", () => {
  let store: Store;
  let hub: Hub;
  let url: string;
  let now = 1_800_000_000_000;

  beforeAll(async () => {
    store = await openStore("memory:", { clock: () => now });
    hub = createHub({ store, token: ADMIN, enrollToken: ENROLL });
    url = await hub.listen();
  });
  afterAll(async () => {
    await hub.close();
    await store.close();
  });

  const call = (method: string, path: string, auth: string | undefined, payload?: unknown) =>
    hub.app.inject({
      method: method as "GET",
      url: path,
      headers: auth ? { authorization: `Bearer ${auth}` } : {},
      ...(payload === undefined ? {} : { payload: payload as object }),
    });
  const create = async (body: Record<string, unknown>, auth = ADMIN) => {
    const r = await call("POST", "/v1/tokens", auth, body);
    expect(r.statusCode, r.body).toBe(201);
    return r.json() as { token: { id: string; tenant: string | null; role: string }; secret: string };
  };

  test("bad input names the field and creates nothing", async () => {
    const before = (await store.listPrincipals()).length;
    for (const [body, field] of [
      [{}, "body.role"],
      [{ role: "root" }, "body.role"],
      [{ role: "reader", tenant: "Team A" }, "body.tenant"],
      [{ role: "reader", ttlMs: 10 }, "body.ttlMs"],
      [{ role: "reader", label: "" }, "body.label"],
      [{ role: "reader", extra: 1 }, "body.extra"],
    ] as const) {
      const r = await call("POST", "/v1/tokens", ADMIN, body);
      expect({ body, status: r.statusCode, field: r.json().error.field }).toEqual({
        body,
        status: 400,
        field,
      });
    }
    expect((await call("DELETE", "/v1/tokens/not-a-uuid", ADMIN)).statusCode).toBe(400);
    const unknown = await call("DELETE", `/v1/tokens/${newId()}`, ADMIN);
    expect(unknown.json().error).toMatchObject({ code: "FLEETLINK_E_TOKEN_NOT_FOUND", field: "token" });
    expect((await store.listPrincipals()).length).toBe(before);
  });

  test("a token expires by the store's clock; the secret is never listed", async () => {
    const { token, secret } = await create({ role: "reader", ttlMs: 60_000, label: "short" });
    expect(secret).toMatch(new RegExp(`^flt_${token.id}\\.`));
    expect((await call("GET", "/v1/runs", secret)).statusCode).toBe(200);
    now += 60_001;
    const r = await call("GET", "/v1/runs", secret);
    expect(r.statusCode).toBe(401);
    expect(r.json().error.code).toBe("FLEETLINK_E_UNAUTHORIZED");
    const list = await call("GET", "/v1/tokens", ADMIN);
    expect(list.body).not.toContain(secret.split(".")[1]);
    expect(list.body).not.toContain("secretHash");
    // A wrong secret for a known id learns nothing more than an unknown id.
    const wrong = await call("GET", "/v1/runs", `flt_${token.id}.wrong`);
    const none = await call("GET", "/v1/runs", `flt_${newId()}.wrong`);
    expect(wrong.json().error).toEqual(none.json().error);
  });

  test("403 names the roles needed and the token's role", async () => {
    const reader = (await create({ role: "reader" })).secret;
    const metrics = (await create({ role: "metrics" })).secret;
    const coordinator = (await create({ role: "coordinator" })).secret;
    const expect403 = async (method: string, path: string, auth: string, message: string, body?: unknown) => {
      const r = await call(method, path, auth, body);
      expect({ path, status: r.statusCode, message: r.json().error.message }).toEqual({
        path,
        status: 403,
        message,
      });
    };
    await expect403(
      "POST",
      "/v1/runs",
      reader,
      "needs role admin or coordinator; this token has role reader",
    );
    await expect403("GET", "/v1/tokens", coordinator, "needs role admin; this token has role coordinator");
    await expect403(
      "GET",
      "/v1/nodes",
      metrics,
      "needs role admin, coordinator or reader; this token has role metrics",
    );
    await expect403("GET", "/metrics", reader, "needs role admin or metrics; this token has role reader");
    await expect403(
      "GET",
      "/v1/runs",
      ENROLL,
      "needs role admin, coordinator or reader; this token is an enrollment token (it may only enroll nodes)",
    );
    await expect403(
      "POST",
      "/v1/nodes/enroll",
      coordinator,
      "needs an enrollment token; this token has role coordinator",
      { name: "x" },
    );
    expect((await call("GET", "/metrics", metrics)).statusCode).toBe(200);
    expect((await call("GET", "/v1/nodes", reader)).statusCode).toBe(200);
  });

  test("a stored enrollment token is checked before anything: made-up, wrong or spent is 401 (and not audited), a valid one 403 elsewhere", async () => {
    const r = await call("POST", "/v1/enroll-tokens", ADMIN, { uses: 1, tenant: "team-e" });
    expect(r.statusCode, r.body).toBe(201);
    const { token, secret } = r.json() as { token: { id: string }; secret: string };
    const refusedBefore = (await store.listAudit({ limit: 1000 })).entries.filter(
      (e) => e.action === "access.refused",
    ).length;
    const made = `fle_${newId()}.made-up`;
    for (const auth of [made, `fle_${token.id}.wrong`, "fle_not-an-id.x"]) {
      const runs = await call("GET", "/v1/runs", auth);
      expect({ auth, status: runs.statusCode, code: runs.json().error.code }).toEqual({
        auth,
        status: 401,
        code: "FLEETLINK_E_UNAUTHORIZED",
      });
      expect((await call("POST", "/v1/nodes/enroll", auth, { name: "x" })).statusCode).toBe(401);
    }
    const valid = await call("GET", "/v1/runs", secret);
    expect(valid.statusCode).toBe(403);
    expect(valid.json().error.message).toMatch(/enrollment token/);
    const enrolled = await call("POST", "/v1/nodes/enroll", secret, { name: "stored-enroll" });
    expect(enrolled.statusCode, enrolled.body).toBe(201);
    expect(enrolled.json().node.tenant).toBe("team-e");
    // Its one use is taken: from now on it is refused like a made-up one.
    const spent = await call("GET", "/v1/runs", secret);
    expect(spent.statusCode).toBe(401);
    // It says what the token is before why it is refused, so the fix is not "make a new enrollment token".
    expect(spent.json().error.message).toMatch(
      /^this is an enrollment token \(it may only enroll nodes\).*used up/,
    );
    // Entries are written in batches, off the request: wait for the valid token's 403, then give the others time.
    const refused = async () =>
      (await store.listAudit({ limit: 1000 })).entries.filter((e) => e.action === "access.refused").length -
      refusedBefore;
    for (let i = 0; i < 100 && (await refused()) < 1; i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 300));
    // One refusal recorded: the valid token's 403; none for the 401s.
    expect(await refused()).toBe(1);
  });

  test("a scoped admin manages its own tenant only", async () => {
    const adminA = (await create({ role: "admin", tenant: "a" })).secret;
    const b = await create({ role: "reader", tenant: "b" });
    const mine = await create({ role: "reader" }, adminA);
    expect(mine.token.tenant).toBe("a");
    expect((await call("DELETE", `/v1/tokens/${b.token.id}`, adminA)).json().error.code).toBe(
      "FLEETLINK_E_TOKEN_NOT_FOUND",
    );
    expect((await call("DELETE", `/v1/tokens/${mine.token.id}`, adminA)).statusCode).toBe(200);
    const listed = (await call("GET", "/v1/tokens", adminA)).json().tokens as { tenant: string }[];
    expect(listed.every((t) => t.tenant === "a")).toBe(true);
    const e = await call("POST", "/v1/enroll-tokens", adminA, { tenant: "b" });
    expect(e.statusCode).toBe(403);
    const own = await call("POST", "/v1/enroll-tokens", adminA, {});
    expect(own.json().token.tenant).toBe("a");
    // Audit: the creations and the refusal were recorded with the principal and its tenant.
    await new Promise((r) => setTimeout(r, 50));
    const audit = (await call("GET", "/v1/audit?limit=1000", ADMIN)).json().entries as {
      action: string;
      tenant: string | null;
      outcome: string;
    }[];
    expect(audit.some((x) => x.action === "token.create" && x.tenant === "a")).toBe(true);
    expect(audit.some((x) => x.action === "token.revoke" && x.tenant === "a")).toBe(true);
    expect(audit.some((x) => x.outcome === "refused")).toBe(true);
  });

  test("CLI: tokens create --role/--tenant, list shows both kinds, revoke takes either", async () => {
    const env = { env: { FLEETLINK_TOKEN: ADMIN, FLEETLINK_HUB: url } };
    const [reader, enroll, bad] = await cliAll([
      [
        ["tokens", "create", "--role", "reader", "--tenant", "team-a", "--ttl", "30d", "--label", "cli-r"],
        env,
      ],
      [["tokens", "create", "--label", "cli-e", "--json"], env],
      [["tokens", "create", "--role", "root"], env],
    ]);
    expect(reader!.code, reader!.stderr).toBe(0);
    expect(reader!.stdout.trim()).toMatch(/^flt_\S+$/);
    expect(enroll!.code, enroll!.stderr).toBe(0);
    const e = JSON.parse(enroll!.stdout) as { token: { id: string; tenant: string } };
    expect(e.token.tenant).toBe("default");
    expect(bad!.code).not.toBe(0);
    expect(bad!.stderr).toMatch(/--role/);
    const list = await cli(["tokens", "list"], env);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^ID\s+LABEL\s+STATE\s+USED\s+ROLE\s+TENANT/);
    expect(list.stdout).toMatch(/cli-r\s+valid\s+-\s+reader\s+team-a/);
    expect(list.stdout).toMatch(/cli-e\s+valid\s+0\/∞\s+enroll\s+default/);
    const id = reader!.stdout.trim().slice(4).split(".")[0]!;
    const revoked = await cliAll(
      [id, e.token.id].map((t) => [["tokens", "revoke", t], env] as Parameters<typeof cli>),
    );
    for (const r of revoked) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^revoked /);
    }
  }, 60_000);
});
