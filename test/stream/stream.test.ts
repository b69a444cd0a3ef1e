import { describe, expect, test } from "vitest";
import { CloseCode } from "../../src/protocol/close-codes.ts";
import { FleetlinkError } from "../../src/protocol/errors.ts";
import { Channel } from "../../src/stream/channel.ts";
import { PeerTable } from "../../src/stream/peers.ts";
import { PendingCalls } from "../../src/stream/pending.ts";
import { memoryPair } from "../../src/stream/transport.ts";

const tick = () => new Promise((r) => setTimeout(r, 5));

describe("pending calls", () => {
  test("pending - a reply racing a cancellation is either delivered or reported unmatched, never lost or blocking", async () => {
    const p = new PendingCalls<number>();
    const ac = new AbortController();
    const a = p.add("a", { signal: ac.signal });
    expect(p.deliver("a", 1)).toBe(true);
    ac.abort();
    await expect(a).resolves.toBe(1);
    const ac2 = new AbortController();
    const b = p.add("b", { signal: ac2.signal });
    ac2.abort("stop");
    expect(p.deliver("b", 2)).toBe(false);
    await expect(b).rejects.toMatchObject({ code: "FLEETLINK_E_CANCELLED" });
    expect(p.size).toBe(0);
  });

  test("pending - timeouts reject, closeAll rejects everything, ids are unique", async () => {
    const p = new PendingCalls<number>();
    const t = p.add("t", { timeoutMs: 10 });
    await expect(t).rejects.toMatchObject({ code: "FLEETLINK_E_MESSAGE_EXPIRED" });
    expect(p.deliver("t", 1)).toBe(false);
    const x = p.add("x");
    await expect(p.add("x")).rejects.toThrow(/already exists/);
    p.closeAll(new FleetlinkError("STREAM_CLOSED"));
    await expect(x).rejects.toMatchObject({ code: "FLEETLINK_E_STREAM_CLOSED" });
  });
});

describe("peer table", () => {
  test("peers - detaching an old stream never detaches its replacement", () => {
    const t = new PeerTable<object>();
    const s1 = {};
    const s2 = {};
    expect(t.attach("n", s1)).toBeUndefined();
    expect(t.attach("n", s2)).toBe(s1);
    expect(t.detach("n", s1)).toBe(false);
    expect(t.get("n")).toBe(s2);
    expect(t.detach("n", s2)).toBe(true);
    expect(t.get("n")).toBeUndefined();
  });
});

describe("channel", () => {
  test("channel - calls in both directions over one transport", async () => {
    const [a, b] = memoryPair();
    const ca = new Channel(a, { onRequest: (m, body) => ({ from: "a", m, body }) });
    const cb = new Channel(b, { onRequest: (m) => ({ from: "b", m }) });
    expect(await cb.request("ping", 1)).toEqual({ from: "a", m: "ping", body: 1 });
    expect(await ca.request("pong")).toEqual({ from: "b", m: "pong" });
  });

  test("channel - a handler error comes back typed; a late response is dropped, never treated as a request", async () => {
    const [a, b] = memoryPair();
    let served = 0;
    new Channel(a, {
      onRequest: async (m) => {
        served++;
        if (m === "slow") await new Promise((r) => setTimeout(r, 50));
        if (m === "bad") throw new FleetlinkError("NOT_ADDRESSEE", "not yours");
        return "ok";
      },
    });
    const cb = new Channel(b, { onRequest: () => "b-served" });
    await expect(cb.request("bad")).rejects.toMatchObject({
      code: "FLEETLINK_E_NOT_ADDRESSEE",
      message: "not yours",
    });
    await expect(cb.request("slow", null, { timeoutMs: 10 })).rejects.toMatchObject({
      code: "FLEETLINK_E_MESSAGE_EXPIRED",
    });
    await new Promise((r) => setTimeout(r, 80));
    expect(served).toBe(2);
    expect(await cb.request("fine")).toBe("ok");
  });

  test("channel - closing rejects calls in flight; requests on a closed channel fail fast", async () => {
    const [a, b] = memoryPair();
    new Channel(a, { onRequest: () => new Promise(() => {}) });
    const cb = new Channel(b);
    const p = cb.request("never");
    await tick();
    a.close(CloseCode.goingAway, "gone");
    await expect(p).rejects.toMatchObject({ code: "FLEETLINK_E_STREAM_CLOSED" });
    await expect(cb.request("again")).rejects.toMatchObject({ code: "FLEETLINK_E_STREAM_CLOSED" });
    expect(await cb.closed).toMatch(/1001/);
  });

  test("channel - the close code reaches both sides' listeners and closeCode, whatever the reason text says", async () => {
    const [a, b] = memoryPair();
    const ca = new Channel(a);
    const cb = new Channel(b);
    expect(cb.closeCode).toBeNull();
    const seen: number[] = [];
    cb.onClose((_r, code) => seen.push(code));
    // A reason that mentions another code must not matter: policies read the code.
    ca.close(CloseCode.replaced, "not (4001)");
    await cb.closed;
    expect(seen).toEqual([CloseCode.replaced]);
    expect(cb.closeCode).toBe(CloseCode.replaced);
    expect(ca.closeCode).toBe(CloseCode.replaced);
    // A listener added after the close still hears the code.
    const late = await new Promise<number>((r) => cb.onClose((_r, c) => r(c)));
    expect(late).toBe(CloseCode.replaced);
  });

  test("channel - a peer sending garbage gets error frames, then is disconnected", async () => {
    const [a, b] = memoryPair();
    const ca = new Channel(a, { maxGarbage: 3 });
    const seen: string[] = [];
    b.onMessage((f) => seen.push(f));
    b.send("nope");
    b.send('{"t":"req"}');
    await tick();
    expect(seen.map((f) => JSON.parse(f).e.field)).toEqual(["frame", "id"]);
    expect(ca.isOpen).toBe(true);
    b.send("[]");
    await tick();
    expect(ca.isOpen).toBe(false);
  });
});
