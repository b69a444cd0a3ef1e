// A body larger than its route accepts is refused with 413 before it is read; the client, still sending,
// must get that answer, not a reset (EPIPE / ECONNRESET) from a server that closed under it.
import http from "node:http";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { enrollTokenFor, type Proc, startHubProc } from "../helpers/procs.ts";

/** What a client sending `bytes` of body (with a content-length, or chunked) saw: a status and body, or an error. */
const post = (
  url: string,
  path: string,
  token: string,
  bytes: number,
  chunked: boolean,
): Promise<{ status?: number; body?: string; error?: string }> =>
  new Promise((resolve) => {
    const u = new URL(path, url);
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: "POST",
        agent: false,
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          ...(chunked ? {} : { "content-length": String(bytes) }),
        },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode, body }));
        res.on("error", (e) => resolve({ status: res.statusCode, error: (e as NodeJS.ErrnoException).code }));
      },
    );
    req.on("error", (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    // Written as a real client would: 64 KiB at a time, as fast as the connection takes it.
    const chunk = Buffer.alloc(64 * 1024, "a");
    let left = bytes;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n)))
          return void req.once("drain", pump);
      }
      req.end();
    };
    req.write('{"name":"');
    pump();
  });

const TOKEN = "oversized-token";
const ENROLL_TOKEN = enrollTokenFor(TOKEN);

describe("oversized bodies", () => {
  // A hub in its own process: its closing a connection races the client's reading as it does in production.
  let hub: Proc;
  const f = { url: "" };
  beforeAll(async () => {
    hub = await startHubProc("memory:", TOKEN);
    f.url = hub.value;
  });
  afterAll(async () => {
    await hub.kill("SIGKILL");
  });

  for (const chunked of [false, true])
    test(`413 - 20 POSTs of 6 MB to a 4 KiB route (${chunked ? "chunked" : "with content-length"}): every client reads the 413 and its error body`, async () => {
      const t0 = performance.now();
      const results = await Promise.all(
        Array.from({ length: 20 }, () => post(f.url, "/v1/nodes/enroll", ENROLL_TOKEN, 6_000_000, chunked)),
      );
      const ms = performance.now() - t0;
      const seen = results.map((r) => r.status ?? r.error);
      console.log(
        `oversized (${chunked ? "chunked" : "content-length"}): ${results.filter((r) => r.status === 413).length}/20 ` +
          `got 413 in ${ms.toFixed(0)} ms; ${JSON.stringify(seen)}`,
      );
      for (const r of results) {
        expect(r.status, JSON.stringify(r)).toBe(413);
        expect(JSON.parse(r.body!).error.code).toBe("FLEETLINK_E_PAYLOAD_TOO_LARGE");
      }
    }, 60_000);

  /**
   * A raw client that never stops sending after its 413 (each `everyMs`, `chunkBytes`; 0: as fast as TCP
   * takes it), reading whatever comes back: when the hub cut it, how much it wrote, and whether it read the 413.
   */
  const endless = (chunkBytes: number, everyMs: number) =>
    new Promise<{ answer: string; cutMs: number; written: number }>((resolve) => {
      const u = new URL(f.url);
      const sock = net.connect({ host: u.hostname, port: Number(u.port), allowHalfOpen: true });
      const t0 = performance.now();
      let answer = "";
      let done = false;
      sock.on("data", (d) => {
        answer += d.toString("latin1");
      });
      sock.on("error", () => {});
      sock.on("close", () => {
        done = true;
        resolve({ answer, cutMs: performance.now() - t0, written: sock.bytesWritten });
      });
      sock.write(
        `POST /v1/nodes/enroll HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${ENROLL_TOKEN}\r\n` +
          "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
      );
      const chunk = Buffer.concat([
        Buffer.from(`${chunkBytes.toString(16)}\r\n`),
        Buffer.alloc(chunkBytes, "a"),
        Buffer.from("\r\n"),
      ]);
      const pump = () => {
        if (done || sock.destroyed) return;
        if (everyMs > 0) {
          sock.write(chunk);
          setTimeout(pump, everyMs);
          return;
        }
        while (sock.write(chunk)) if (done || sock.destroyed) return;
        sock.once("drain", pump);
      };
      pump();
    });

  test("413 - a client that keeps trickling its body after the 413 is cut within the linger time (5 s)", async () => {
    const r = await endless(1024, 20);
    console.log(
      `oversized, trickling: 413 read: ${r.answer.startsWith("HTTP/1.1 413")}; cut after ${r.cutMs.toFixed(0)} ms`,
    );
    expect(r.answer).toMatch(/^HTTP\/1.1 413 .*FLEETLINK_E_PAYLOAD_TOO_LARGE/s);
    expect(r.cutMs).toBeGreaterThan(4000);
    expect(r.cutMs).toBeLessThan(5000 + 1500);
  }, 30_000);

  test("413 - a client that keeps sending fast after the 413 is cut once the hub read 64 MiB of it", async () => {
    const r = await endless(1024 * 1024, 0);
    console.log(
      `oversized, flooding: 413 read: ${r.answer.startsWith("HTTP/1.1 413")}; cut after ${r.cutMs.toFixed(0)} ms and ` +
        `${(r.written / 1024 / 1024).toFixed(1)} MiB written`,
    );
    expect(r.answer).toMatch(/^HTTP\/1.1 413 /);
    // 64 MiB read by the hub, plus what the kernel buffers on the way.
    expect(r.written).toBeGreaterThan(64 * 1024 * 1024);
    expect(r.written).toBeLessThan(80 * 1024 * 1024);
    expect(r.cutMs).toBeLessThan(5000);
  }, 30_000);

  test("413 - a body past the admin routes' limit: every client reads the 413", async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, () => post(f.url, "/v1/runs", TOKEN, 24_000_000, false)),
    );
    for (const r of results) expect(r.status, JSON.stringify(r)).toBe(413);
  }, 60_000);
});
