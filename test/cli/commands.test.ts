// Every CLI command against a real hub over real sockets (in-process hub, node agents with checkpointable
// state), run as real processes: the happy path, --json that parses, tables for people, and a bad input that
// exits 1 with the hub's error code.
import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.ts";
import { createHub, type Hub } from "../../src/hub/server.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";
import { type CheckpointFleet, startCheckpointFleet } from "../helpers/checkpoint-fleet.ts";
import { ENROLL_TOKEN, TOKEN } from "../helpers/fleet.ts";
import { cli, cliAll, failedWith } from "./cli-run.ts";

let f: CheckpointFleet;
let hub: string[];
let ids: { alpha: string; beta: string };
/** A loopback port nothing listens on (taken, then released). */
let deadPort: number;
const as = (json: string) => JSON.parse(json) as Record<string, never>;
/** The `hold` handler's calls: each waits until released. */
const held: { release: (v: unknown) => void }[] = [];

beforeAll(async () => {
  f = await startCheckpointFleet();
  const handlers = () => ({
    echo: (p: unknown) => p,
    hold: () => new Promise((release) => held.push({ release })),
    fail: () => {
      throw new Error("refuses");
    },
  });
  const a = await f.node("alpha", { handlers });
  const b = await f.node("beta", { handlers });
  ids = { alpha: a.agent.nodeId!, beta: b.agent.nodeId! };
  hub = ["--hub", f.url, "--token", TOKEN];
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  deadPort = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
}, 30_000);
afterAll(async () => {
  await f?.close();
});

describe("fleetlink CLI commands", () => {
  test("nodes, tokens, status, version - happy paths, --json parses, tables name columns, bad input exits 1 with the code", async () => {
    const [list, listJson, show, showJson, showBad, status, statusJson, version, tCreate] = await cliAll([
      [["nodes", "list", ...hub]],
      [["nodes", "list", ...hub, "--json"]],
      [["nodes", "show", "alpha", ...hub]],
      [["nodes", "show", ids.beta, ...hub, "--json"]],
      [["nodes", "show", "nobody", ...hub]],
      [["status", "--hub", `${f.url},http://127.0.0.1:${deadPort}`, "--token", TOKEN]],
      [["status", ...hub, "--json"]],
      [["version", "--json"]],
      [["tokens", "create", "--ttl", "1h", "--uses", "2", "--label", "rack-7", ...hub, "--json"]],
    ]);
    expect(list.stdout).toMatch(/^ID\s+NAME\s+STATUS\s+LAST HEARTBEAT/);
    expect(list.stdout).toMatch(/alpha\s+online/);
    expect(as(listJson.stdout).nodes).toHaveLength(2);
    expect(show.stdout).toMatch(new RegExp(`id:\\s+${ids.alpha}`));
    expect(as(showJson.stdout).node).toMatchObject({ id: ids.beta, name: "beta", status: "online" });
    expect(failedWith(showBad, "NODE_NOT_FOUND"), showBad.stderr).toBe(true);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(
      new RegExp(`replicas:.*ready; http://127.0.0.1:${deadPort} DOWN \\(.*ECONNREFUSED`),
    );
    expect(status.stdout).toMatch(/nodes:\s+2 \(online 2\)/);
    // The store's backend comes from /v1/stats (it was once dropped by the route's response schema).
    expect(status.stdout).toMatch(/^store:\s+sqlite$/m);
    // The hub's version comes from its OpenAPI document.
    expect(as(statusJson.stdout)).toMatchObject({
      nodes: { total: 2 },
      hub: { connectedNodes: 2, version: "0.1.0", backend: "sqlite" },
    });
    expect(as(version.stdout)).toMatchObject({ fleetlink: "0.1.0", node: process.versions.node });
    const created = as(tCreate.stdout) as unknown as { token: { id: string; label: string }; secret: string };
    expect(created.token.label).toBe("rack-7");

    // Tables for tokens; the secret alone on stdout (for `> enroll.token`), and it enrolls a node.
    const [tList, plain, revokeBad, noToken, wrongToken] = await cliAll([
      [["tokens", "list", ...hub]],
      [["tokens", "create", ...hub]],
      [["tokens", "revoke", "not-a-uuid", ...hub]],
      [["nodes", "list", "--hub", f.url]],
      [["nodes", "list", "--hub", f.url, "--token", "wrong"]],
    ]);
    expect(tList.stdout).toMatch(new RegExp(`^${created.token.id}\\s+rack-7\\s+valid\\s+0/2`, "m"));
    expect(plain.stdout.trim()).toMatch(/^\S+$/);
    const enroll = await fetch(`${f.url}/v1/nodes/enroll`, {
      method: "POST",
      headers: { authorization: `Bearer ${plain.stdout.trim()}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "by-token" }),
    });
    expect(enroll.status).toBe(201);
    expect(failedWith(revokeBad, "INVALID_ARGUMENT"), revokeBad.stderr).toBe(true);
    expect(noToken.code).toBe(ExitCode.usage);
    expect(noToken.stderr).toMatch(/admin token is needed/);
    expect(failedWith(wrongToken, "UNAUTHORIZED"), wrongToken.stderr).toBe(true);
    // Revoke: the token enrolls no more. Unregister by name; an unknown id is NODE_NOT_FOUND.
    const [revoke, unreg, unregAgain, statusDown, versionBad] = await cliAll([
      [["tokens", "revoke", created.token.id, ...hub, "--json"]],
      [["nodes", "unregister", "by-token", ...hub, "--json"]],
      [["nodes", "unregister", "00000000-0000-7000-8000-000000000000", ...hub]],
      [["status", "--hub", `http://127.0.0.1:${deadPort}`, "--token", TOKEN]],
      [["version", "--jsn"]],
    ]);
    expect(failedWith(statusDown, "HUB_UNAVAILABLE"), statusDown.stderr).toBe(true);
    expect(versionBad.code).toBe(ExitCode.usage);
    expect(versionBad.stderr).toMatch(/unknown option '--jsn'/);
    expect(as(revoke.stdout).token).toMatchObject({ id: created.token.id, revoked: true });
    const refused = await fetch(`${f.url}/v1/nodes/enroll`, {
      method: "POST",
      headers: { authorization: `Bearer ${created.secret}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "too-late" }),
    });
    expect(refused.status).toBe(401);
    expect(as(unreg.stdout).node).toMatchObject({ name: "by-token", status: "unregistered" });
    expect(failedWith(unregAgain, "NODE_NOT_FOUND"), unregAgain.stderr).toBe(true);
  }, 60_000);

  test("call and runs - replies printed as they arrive, a summary, the run it made listed and shown; failures exit 1", async () => {
    const [ok, text, failing, badPayload, badQuorum, tooMany, noNodes] = await cliAll([
      [["call", "echo", '{"a":1}', "--all", "--quorum", "all", "--json", ...hub]],
      [["call", "echo", "-", "--nodes", "alpha,beta", "--quorum", "first", ...hub], { input: '"hi"' }],
      [["call", "fail", "null", "--nodes", `alpha,${ids.beta}`, "--quorum", "majority", ...hub]],
      [["call", "echo", "{oops", "--all", ...hub]],
      [["call", "echo", "1", "--all", "--quorum", "most", ...hub]],
      [["call", "echo", "1", "--all", "--quorum", "3", ...hub]],
      [["call", "echo", "1", "--nodes", "ghost", ...hub]],
    ]);
    const lines = ok.stdout.trim().split("\n").map(as);
    expect(
      lines
        .filter((l) => l.type === "reply")
        .map((l) => [l.name, l.value])
        .sort(),
    ).toEqual([
      ["alpha", { a: 1 }],
      ["beta", { a: 1 }],
    ]);
    const summary = lines.at(-1) as unknown as { type: string; met: boolean; replies: number; run: string };
    expect(summary).toMatchObject({ type: "summary", met: true, replies: 2 });
    expect(text.code).toBe(0);
    // Each node as `name (…last 8 hex of its id)`: the first digits of a UUIDv7 are the same for nodes enrolled together.
    expect(text.stdout).toMatch(
      new RegExp(
        `^(alpha \\(…${ids.alpha.slice(-8)}\\)|beta \\(…${ids.beta.slice(-8)}\\)) {2}ok {2}\\d+ ms {2}"hi"$`,
        "m",
      ),
    );
    expect(text.stdout).toMatch(/quorum first met: 1 reply/);
    expect(failedWith(failing, "INCOMPLETE_CALL"), failing.stderr).toBe(true);
    expect(failing.stdout).toMatch(/HANDLER_FAILED .*refuses/);
    expect(failedWith(badPayload, "INVALID_ARGUMENT")).toBe(true);
    expect(badPayload.stderr).toMatch(/payload: not JSON/);
    expect(badQuorum.code).toBe(ExitCode.usage);
    expect(badQuorum.stderr).toMatch(/--quorum: "most" is not first, majority, all or a number/);
    expect(tooMany.stderr).toMatch(/--quorum: 3 replies asked of 2 node/);
    expect(failedWith(noNodes, "NODE_NOT_FOUND")).toBe(true);

    // The run made for the call: finished after it, listed, shown with its two instructions and replies.
    const [created, createdTeam, createdBad] = await cliAll([
      [["runs", "create", ...hub]],
      [["runs", "create", "--tenant", "team-a", ...hub, "--json"]],
      [["runs", "create", "--tenant", "Not A Tenant", ...hub]],
    ]);
    // `runs create` prints the new run's id alone, for RUN=$(fleetlink runs create).
    expect(created.stdout.trim(), created.stderr).toMatch(/^[0-9a-f-]{36}$/);
    const open = { run: { id: created.stdout.trim() } };
    expect(as(createdTeam.stdout).run).toMatchObject({ tenant: "team-a", status: "pending" });
    expect(failedWith(createdBad, "INVALID_ARGUMENT"), createdBad.stderr).toBe(true);
    expect(createdBad.stderr).toMatch(/tenant/);
    const [list, listFinished, show, showJson, finish, listBad, showBad] = await cliAll([
      [["runs", "list", ...hub]],
      [["runs", "list", "--status", "finished", "--limit", "50", ...hub, "--json"]],
      [["runs", "show", summary.run, ...hub]],
      [["runs", "show", summary.run, ...hub, "--json"]],
      [["runs", "finish", open.run.id, "--reason", "done here", ...hub, "--json"]],
      [["runs", "list", "--status", "sleeping", ...hub]],
      [["runs", "show", "00000000-0000-7000-8000-000000000000", ...hub]],
    ]);
    expect(list.stdout).toMatch(/^ID\s+TENANT\s+STATUS\s+CREATED/);
    expect(list.stdout).toMatch(new RegExp(`${open.run.id}\\s+default\\s+pending`));
    expect(list.stdout).toContain(summary.run);
    const finishedIds = (as(listFinished.stdout).runs as { id: string }[]).map((r) => r.id);
    expect(finishedIds).toContain(summary.run);
    expect(show.stdout).toMatch(/instructions:\s+2 \(ok 2\)/);
    expect(show.stdout).toMatch(new RegExp(`alpha \\(…${ids.alpha.slice(-8)}\\)\\s+echo`));
    const shown = as(showJson.stdout) as unknown as {
      run: { status: string };
      instructions: { reply: unknown }[];
    };
    expect(shown.run.status).toBe("finished");
    expect(shown.instructions).toHaveLength(2);
    expect(shown.instructions.every((i) => i.reply !== null)).toBe(true);
    expect(as(finish.stdout).run).toMatchObject({ status: "finished", reason: "done here" });
    expect(listBad.code).toBe(ExitCode.usage);
    expect(listBad.stderr).toMatch(/--status/);
    expect(failedWith(showBad, "RUN_NOT_FOUND")).toBe(true);
    const again = await cli(["runs", "finish", open.run.id, ...hub]);
    expect(failedWith(again, "INVALID_TRANSITION"), again.stderr).toBe(true);
  }, 60_000);

  test("call and runs - the call's run is listed running while the call runs, finished after it", async () => {
    const call = cli(["call", "hold", "1", "--nodes", "alpha", "--quorum", "all", "--json", ...hub]);
    while (held.length === 0) await new Promise((r) => setTimeout(r, 20));
    const during = await cli(["runs", "list", "--status", "running", ...hub, "--json"]);
    held.shift()!.release("done");
    const done = await call;
    expect(done.code, done.stderr).toBe(0);
    const summary = as(done.stdout.trim().split("\n").at(-1)!) as unknown as { run: string };
    expect((as(during.stdout).runs as { id: string }[]).map((r) => r.id)).toContain(summary.run);
    const after = await cli(["runs", "show", summary.run, ...hub, "--json"]);
    expect((as(after.stdout) as unknown as { run: unknown }).run).toMatchObject({
      status: "finished",
      reason: "fleetlink call hold",
    });
  }, 30_000);

  test("checkpoint - assign, push, status, list, pull, activate of a run's hosts, with --json and tables", async () => {
    const run = (await (
      await fetch(`${f.url}/v1/runs`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } })
    ).json()) as { run: { id: string } };
    const r = ["--run", run.run.id];
    const assign = await cli(["checkpoint", "assign", ...r, "--hosts", `${ids.alpha},${ids.beta}`, ...hub]);
    expect(assign.code, assign.stderr).toBe(0);
    expect(assign.stdout).toMatch(new RegExp(`^0\\s+${ids.alpha}`, "m"));
    const push = await cli(["checkpoint", "push", ...r, "--timeout", "20s", ...hub]);
    expect(push.code, push.stderr).toBe(0);
    const pushed = as(push.stdout) as unknown as { id: string; status: string };
    expect(pushed.status).toBe("ok");
    const [status, statusJson, list, pull, activate, missingRun] = await cliAll([
      [["checkpoint", "status", ...r, ...hub]],
      [["checkpoint", "status", ...r, ...hub, "--json"]],
      [["checkpoint", "list", ...r, ...hub, "--json"]],
      [["checkpoint", "pull", ...r, "--id", pushed.id, "--timeout", "20s", ...hub]],
      [["checkpoint", "activate", ...r, "--host", "1", ...hub]],
      [["checkpoint", "status", ...hub]],
    ]);
    expect(status.stdout).toMatch(new RegExp(`push: ok ${pushed.id}`));
    expect(status.stdout).toMatch(new RegExp(`host 1  ${ids.beta}  ok`));
    expect(as(statusJson.stdout)).toMatchObject({
      push: { status: "ok", id: pushed.id },
      roles: { nHosts: 2 },
    });
    expect((as(list.stdout).checkpoints as { id: string }[]).map((c) => c.id)).toEqual([pushed.id]);
    expect(as(pull.stdout)).toMatchObject({ id: pushed.id, status: "ok" });
    // Host 1 has no standby: refused with the hub's code, nothing changed.
    expect(activate.code).toBe(ExitCode.usage);
    expect(activate.stderr).toMatch(/^fleetlink: FLEETLINK_E_\w+: .*standby/m);
    expect(missingRun.code).toBe(ExitCode.usage);
    expect(missingRun.stderr).toMatch(/--run/);
  }, 60_000);

  test("nodes approve - a node pending approval (serve --enroll-approval manual) is approved by name", async () => {
    const store: Store = await openStore("memory:");
    const manual: Hub = createHub({
      store,
      token: TOKEN,
      enrollToken: ENROLL_TOKEN,
      enrollApproval: "manual",
    });
    const url = await manual.listen({ port: 0, host: "127.0.0.1" });
    try {
      const res = await fetch(`${url}/v1/nodes/enroll`, {
        method: "POST",
        headers: { authorization: `Bearer ${ENROLL_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ name: "waiting" }),
      });
      expect(res.status).toBe(201);
      const h = ["--hub", url, "--token", TOKEN];
      const [pending, approve] = await cliAll([
        [["nodes", "list", "--status", "pending", ...h, "--json"]],
      ]).then(async ([p]) => [p!, await cli(["nodes", "approve", "waiting", ...h, "--json"])]);
      expect((as(pending.stdout).nodes as { name: string }[]).map((n) => n.name)).toEqual(["waiting"]);
      expect(as(approve.stdout).node).toMatchObject({ name: "waiting", approved: true });
      const [after, unknown] = await cliAll([
        [["nodes", "list", "--status", "pending", ...h]],
        [["nodes", "approve", "nobody", ...h]],
      ]);
      expect(after!.stdout.trim()).toBe("no nodes");
      expect(failedWith(unknown!, "NODE_NOT_FOUND"), unknown!.stderr).toBe(true);
    } finally {
      await manual.close();
      await store.close();
    }
  }, 30_000);
});
