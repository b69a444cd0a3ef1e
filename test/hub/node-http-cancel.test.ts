// Cancel events over HTTP long polls: kept until the session's next poll arrives after an answer carrying them
// was written in full (the implicit ack), so an answer the node never reads (a superseded poll, a client that
// left) loses none. Session-level cases drive HttpSession as the poll route does; the last one is a real hub.
import { afterEach, describe, expect, test } from "vitest";
import { type HttpSession, HttpSessions, type PollEvent } from "../../src/hub/delivery/http-sessions.ts";
import { NodeStreams } from "../../src/hub/delivery/node-streams.ts";
import type { WireInstruction } from "../../src/protocol/wire.ts";
import { openStore } from "../../src/store/open.ts";
import { silentLogger } from "../../src/stream/channel.ts";
import { Liveness } from "../../src/stream/liveness.ts";
import { ENROLL_TOKEN, startFleet, TOKEN } from "../helpers/fleet.ts";
import { enrollNode, openSession } from "../helpers/node-http.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the poll route does: waits for the answer, then takes the events to send with it. */
const poll = (s: HttpSession, acks: string[], waitMs: number) => {
  const p = s.poll(acks, waitMs);
  const answered = p.answer.then((a) => {
    const { events, written } = s.offerEvents();
    return { instructions: "ok" in a ? (a.ok as WireInstruction[]) : [], events, written };
  });
  return { answered, cancel: p.cancel };
};

const idsOf = (events: PollEvent[]) => events.flatMap((e) => (e.b as { ids: string[] }).ids);

describe("http node - cancel events", () => {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** A hello'd HTTP session holding one delivered, acknowledged instruction. */
  const holding = async () => {
    const store = await openStore("memory:");
    const nodes = new NodeStreams({
      store,
      maxInflight: 32,
      deliveryTimeoutMs: 1000,
      log: silentLogger,
      onReply: () => {},
    });
    const sessions = new HttpSessions({
      nodes,
      liveness: new Liveness({ probeAfterMs: 60_000, dropAfterMs: 120_000 }),
    });
    cleanups.push(() => store.close());
    cleanups.push(() => nodes.closeAll());
    cleanups.push(() => sessions.close());
    const node = await store.registerNode({ name: "h", heartbeatIntervalMs: 1000 });
    const s = sessions.open(node, "credential-hash");
    expect(await s.request("hello", { inflight: [], heartbeatIntervalMs: 1000 })).toHaveProperty("ok");
    const run = await store.createRun();
    await store.pushInstructions(run.id, [{ dst: node.id, method: "m", ttlMs: 60_000 }]);
    nodes.wake();
    const first = await poll(s, [], 5000).answered;
    const id = first.instructions[0]!.id;
    first.written();
    expect((await poll(s, [id], 0).answered).instructions).toEqual([]);
    const withdraw = async () => {
      expect(await store.withdrawInstructions(run.id, [id])).toEqual([id]);
      nodes.cancelled();
    };
    return { s, id, withdraw };
  };

  test("http node - a cancel answered to a poll whose client left comes again in the next poll", async () => {
    const { s, id, withdraw } = await holding();
    const gone = poll(s, [], 10_000);
    await withdraw();
    // Answered with the cancel; the client left before it was written (the route never sees "finish").
    expect(idsOf((await gone.answered).events)).toEqual([id]);
    const t0 = Date.now();
    const next = await poll(s, [], 10_000).answered;
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(idsOf(next.events)).toEqual([id]);
    next.written();
    // Acknowledged by arriving after that answer was written: not sent again, and the poll parks.
    const after = await poll(s, [], 100).answered;
    expect(after.events).toEqual([]);
  });

  test("http node - a cancel that a superseded poll's answer carries is not lost: the newer poll has it too", async () => {
    const { s, id } = await holding();
    const older = poll(s, [], 10_000);
    await sleep(20);
    // The hub's channel emits the event; before its flush runs, the node gives up on the older poll.
    s.send(JSON.stringify({ t: "evt", m: "cancel", b: { ids: [id], code: "FLEETLINK_E_CANCELLED" } }));
    const newer = poll(s, [], 10_000);
    const o = await older.answered;
    expect(o.instructions).toEqual([]);
    // Even if the older answer reaches its socket after the newer poll arrived, the newer poll carries it.
    o.written();
    const n = await newer.answered;
    expect(idsOf(n.events)).toEqual([id]);
    n.written();
    expect((await poll(s, [], 50).answered).events).toEqual([]);
  });

  test("http node - over a real hub a cancel rides one poll and is not repeated by the next", async () => {
    const f = await startFleet();
    cleanups.push(() => f.close());
    const n = await enrollNode(f.url, ENROLL_TOKEN, "hc");
    const s = await openSession(f.url, n.auth);
    const admin = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
    const runId = (
      (await (await fetch(`${f.url}/v1/runs`, { method: "POST", headers: admin, body: "{}" })).json()) as {
        run: { id: string };
      }
    ).run.id;
    const pushed = await fetch(`${f.url}/v1/runs/${runId}/instructions`, {
      method: "POST",
      headers: admin,
      body: JSON.stringify({ items: [{ dst: n.id, method: "m", payload: 1, ttlMs: 60_000 }] }),
    });
    expect(pushed.status).toBe(201);
    const first = await s.poll([], 5000);
    const id = (first.body.instructions as { id: string }[])[0]!.id;
    expect((await s.poll([id], 0)).body.instructions).toEqual([]);
    const res = await fetch(`${f.url}/v1/runs/${runId}/instructions/withdraw`, {
      method: "POST",
      headers: admin,
      body: JSON.stringify({ ids: [id] }),
    });
    expect(res.status).toBe(200);
    const withEvent = await s.poll([], 5000);
    expect(withEvent.body.events).toEqual([{ m: "cancel", b: { ids: [id], code: "FLEETLINK_E_CANCELLED" } }]);
    const t0 = Date.now();
    const next = await s.poll([], 300);
    expect(next.status).toBe(200);
    expect(next.body.events).toBeUndefined();
    // Parked for its wait: the acknowledged event does not make every poll return at once.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });
});
