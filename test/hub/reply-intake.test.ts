// Reply intake over memoryPair: replies are stored once, oversized ones become PAYLOAD_TOO_LARGE replies,
// and a malformed reply is refused with the field named.
import { describe, expect, test } from "vitest";
import { nodeStreams, until } from "../helpers/node-streams.ts";

describe("reply intake", () => {
  test("replies - stored once (a resend is a duplicate), an oversized result stored as PAYLOAD_TOO_LARGE, bad ids refused", async () => {
    const h = await nodeStreams({ store: { maxPayloadBytes: 1024 } });
    const node = await h.register("r");
    const n = await h.connect(node);
    const run = await h.store.createRun();
    const [a, b] = await h.store.pushInstructions(run.id, [
      { dst: node.id, method: "m", ttlMs: 60_000, payload: new Uint8Array() },
      { dst: node.id, method: "m", ttlMs: 60_000, payload: new Uint8Array() },
    ]);
    h.streams.wake(node.id);
    await until(() => n.instructions.length === 2);
    const ra = { id: crypto.randomUUID(), runId: run.id, replyTo: a!.id, payload: "ok", error: null };
    expect(await n.ch.request("reply", ra)).toEqual({ ok: true, duplicate: false });
    expect(await n.ch.request("reply", ra)).toEqual({ ok: true, duplicate: true });
    const big = {
      id: crypto.randomUUID(),
      runId: run.id,
      replyTo: b!.id,
      payload: "x".repeat(5000),
      error: null,
    };
    expect(await n.ch.request("reply", big)).toMatchObject({
      ok: true,
      replacedBy: "FLEETLINK_E_PAYLOAD_TOO_LARGE",
    });
    const stored = await h.store.getReplies(run.id, [a!.id, b!.id]);
    expect(stored.find((r) => r.replyTo === b!.id)?.error?.code).toBe("FLEETLINK_E_PAYLOAD_TOO_LARGE");
    expect(h.replies).toHaveLength(2); // the duplicate woke nobody
    expect(h.streams.inflight).toBe(0);
    await expect(n.ch.request("reply", { ...ra, id: "nope" })).rejects.toMatchObject({ field: "id" });
    await expect(
      n.ch.request("reply", { ...ra, id: crypto.randomUUID(), error: { code: "", message: "m" } }),
    ).rejects.toMatchObject({ field: "error.code" });
  });
});
