// Secure enrollment: stored tokens with expiry and use counts, unique live names, manual approval, rate limits.
import { afterEach, describe, expect, test } from "vitest";
import { NodeAgent } from "../../src/node/agent.ts";
import type { AgentStatus } from "../../src/node/status.ts";
import { ENROLL_TOKEN, startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";

const admin = { authorization: `Bearer ${TOKEN}` };

describe("enrollment", () => {
  let f: TestFleet;
  afterEach(async () => {
    await f.close();
  });

  const enroll = (token: string, name: string) =>
    f.hub.app.inject({
      method: "POST",
      url: "/v1/nodes/enroll",
      headers: { authorization: `Bearer ${token}` },
      payload: { name },
    });

  test("tokens - a stored token enrolls as many nodes as its uses allow, until it expires or is revoked", async () => {
    f = await startFleet();
    const fleet = await f.fleet();
    const { token, secret } = await fleet.createEnrollToken({ uses: 2, label: "rack 7" });
    expect(token).toMatchObject({ uses: 2, used: 0, revoked: false, label: "rack 7" });
    expect(JSON.stringify(await fleet.enrollTokens())).not.toContain(secret.split(".")[1]);
    expect((await enroll(secret, "r7-a")).statusCode).toBe(201);
    expect((await enroll(secret, "r7-b")).statusCode).toBe(201);
    const third = await enroll(secret, "r7-c");
    expect(third.statusCode).toBe(401);
    expect(third.json().error.message).toMatch(/used/);
    expect((await fleet.enrollTokens()).find((t) => t.id === token.id)?.used).toBe(2);

    const wrong = `${secret.slice(0, -3)}abc`;
    expect((await enroll(wrong, "forged")).statusCode).toBe(401);

    const revocable = await fleet.createEnrollToken({});
    await fleet.revokeEnrollToken(revocable.token.id);
    expect((await enroll(revocable.secret, "late")).statusCode).toBe(401);

    const short = await fleet.createEnrollToken({ ttlMs: 1000 });
    expect((await enroll(short.secret, "quick")).statusCode).toBe(201);
    await new Promise((r) => setTimeout(r, 1100));
    const expired = await enroll(short.secret, "slow");
    expect(expired.statusCode).toBe(401);
    expect(expired.json().error.message).toMatch(/expired/);
  });

  test("tokens - two enrollments racing for the last use of a token: exactly one wins", async () => {
    f = await startFleet();
    const fleet = await f.fleet();
    for (let round = 0; round < 10; round++) {
      const { secret } = await fleet.createEnrollToken({ uses: 1 });
      const res = await Promise.all([enroll(secret, `race-${round}-a`), enroll(secret, `race-${round}-b`)]);
      expect(res.map((r) => r.statusCode).sort()).toEqual([201, 401]);
    }
  });

  test("names - a live node's name cannot be taken by a newcomer; an offline one's can", async () => {
    f = await startFleet();
    const a = await f.node("worker-1", { ping: () => "pong" });
    const taken = await enroll(ENROLL_TOKEN, "worker-1");
    expect(taken.statusCode).toBe(409);
    expect(taken.json().error.code).toBe("FLEETLINK_E_NAME_TAKEN");
    await a.stop();
    await f.store.unregisterNode(a.nodeId!);
    expect((await enroll(ENROLL_TOKEN, "worker-1")).statusCode).toBe(201);
  });

  test("approval - with manual approval a new node is pending, gets no work and is not in fleet.nodes() until approved", async () => {
    f = await startFleet({ enrollApproval: "manual" });
    const fleet = await f.fleet();
    const agent = new NodeAgent({
      hubs: [f.url],
      name: "newcomer",
      enrollToken: ENROLL_TOKEN,
      heartbeatIntervalMs: 500,
      handlers: { ping: () => "pong" },
    });
    const seen: AgentStatus[] = [];
    void (async () => {
      for await (const s of agent.status()) seen.push(s);
    })();
    const started = agent.start();
    try {
      await expect.poll(() => seen.some((s) => s.state === "pending"), { timeout: 5000 }).toBe(true);
      expect(await fleet.nodes()).toEqual([]);
      const all = await fleet.nodes({ all: true });
      expect(all).toHaveLength(1);
      expect(all[0]).toMatchObject({ name: "newcomer", approved: false });
      const approved = await fleet.approve(agent.nodeId!);
      expect(approved.approved).toBe(true);
      await started;
      await expect
        .poll(async () => (await fleet.nodes()).map((n) => n.name), { timeout: 5000 })
        .toEqual(["newcomer"]);
      const run = await fleet.createRun();
      const r = await run
        .configuration(await fleet.nodes())
        .call("ping", null, { quorum: "all", timeoutMs: 5000 });
      expect([...r.replies.values()]).toEqual(["pong"]);
    } finally {
      await agent.stop({ timeoutMs: 500 });
    }
  });

  test("rate - enrollments from one address beyond the limit get 429 and create nothing", async () => {
    f = await startFleet({ enrollRateLimit: { max: 5, windowMs: 60_000 } });
    const codes: number[] = [];
    for (let i = 0; i < 8; i++) codes.push((await enroll(ENROLL_TOKEN, `burst-${i}`)).statusCode);
    expect(codes).toEqual([201, 201, 201, 201, 201, 429, 429, 429]);
    const limited = await enroll(ENROLL_TOKEN, "one-more");
    expect(limited.json().error.code).toBe("FLEETLINK_E_RATE_LIMITED");
    const { nodes } = (
      await f.hub.app.inject({ method: "GET", url: "/v1/nodes", headers: admin })
    ).json() as { nodes: unknown[] };
    expect(nodes).toHaveLength(5);
  });
});
