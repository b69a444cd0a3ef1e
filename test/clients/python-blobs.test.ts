import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { ENROLL_TOKEN, startFleet, type TestFleet, TOKEN } from "../helpers/fleet.ts";
import { type PyNode, startPyNode } from "./py-node.ts";

const MiB = 1024 * 1024;
const HANDLERS = join(import.meta.dirname, "py_blob_handlers.py");

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** n bytes of the pattern py_blob_handlers.grow appends: (i * 31 + 7) mod 256. */
const pattern = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);

/**
 * The Python node (clients/python) against a real hub with a TypeScript coordinator: bytes in a payload reach
 * its handler as bytes (a blob, downloaded), bytes it returns come back as bytes (a blob, uploaded); a call
 * that ends before the Python handler returns cancels it (ctx.cancelled) and its late result sends no reply.
 */
describe("python node and blobs", () => {
  let fleet: TestFleet | undefined;
  const nodes: PyNode[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.kill("SIGKILL")));
    await fleet?.close();
    fleet = undefined;
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const blobStore = () => {
    const d = mkdtempSync(join(tmpdir(), "fleetlink-py-blobs-"));
    dirs.push(d);
    return `file://${d}`;
  };

  test("python blobs - a TypeScript coordinator sends a Python node 2 MiB of bytes and gets 3 MiB back, equal", async () => {
    fleet = await startFleet({ blobStore: blobStore() });
    const py = await startPyNode({
      hubs: [fleet.url],
      enrollToken: ENROLL_TOKEN,
      name: "py-blobs",
      handlers: HANDLERS,
    });
    nodes.push(py);
    const run = await (await fleet.fleet()).createRun();
    const cfg = run.configuration([py.nodeId]);
    const data = Uint8Array.from({ length: 2 * MiB }, (_, i) => (i * 7 + (i >> 9)) & 0xff);

    const r = await cfg.call("grow", { data, extra: MiB }, { quorum: "all", timeoutMs: 60_000 });
    const out = r.replies.get(py.nodeId) as { data: Uint8Array; sha256: string; type: string };
    expect(r.errors.get(py.nodeId)).toBeUndefined();
    // The handler saw bytes, and exactly the bytes sent.
    expect(out.type).toBe("bytes");
    expect(out.sha256).toBe(sha256(data));
    expect(out.data).toBeInstanceOf(Uint8Array);
    expect(out.data.byteLength).toBe(3 * MiB);
    expect(Buffer.from(out.data.subarray(0, 2 * MiB)).equals(Buffer.from(data))).toBe(true);
    expect(Buffer.from(out.data.subarray(2 * MiB)).equals(Buffer.from(pattern(MiB)))).toBe(true);
    // Both ways as blobs: the coordinator's 2 MiB sits in the Python node's cache under its hash, and the 3 MiB
    // result was uploaded by the node (the run reads it through the hub's blob route).
    expect(existsSync(join(py.workDir, "blobs", sha256(data)))).toBe(true);
    const uploaded = await fetch(`${fleet.url}/v1/runs/${run.id}/blobs/${sha256(out.data)}`, {
      method: "HEAD",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(uploaded.status).toBe(200);
    // Small bytes travel inline ($bytes) both ways.
    const echo = await cfg.call(
      "echo",
      { small: new Uint8Array([1, 2, 3]) },
      { quorum: "all", timeoutMs: 10_000 },
    );
    expect(Buffer.from((echo.replies.get(py.nodeId) as { small: Uint8Array }).small)).toEqual(
      Buffer.from([1, 2, 3]),
    );
    expect(py.output()).not.toMatch(/Traceback/);
  }, 120_000);

  test("python blobs - a call that times out cancels the Python handler: ctx.cancelled is set and no reply is sent", async () => {
    fleet = await startFleet();
    const py = await startPyNode({
      hubs: [fleet.url],
      enrollToken: ENROLL_TOKEN,
      name: "py-cancel",
      handlers: HANDLERS,
    });
    nodes.push(py);
    const run = await (await fleet.fleet()).createRun();
    const cfg = run.configuration([py.nodeId]);
    const call = cfg.call("wait", { ms: 20_000 }, { quorum: "all", timeoutMs: 1500 });
    await expect
      .poll(() => py.calls().filter((l) => l.startsWith("start ")).length, { timeout: 5000 })
      .toBe(1);
    const id = py.calls()[0]!.split(" ")[1]!;
    await call.catch(() => undefined);
    await expect.poll(() => py.calls(), { timeout: 5000 }).toContain(`cancelled ${id} wait`);
    await expect
      .poll(() => py.output(), { timeout: 5000 })
      .toContain(`dropping the result of cancelled instruction ${id}`);
    // The node stays useful, and the cancelled instruction never got a reply stored.
    expect(
      (await cfg.call("echo", "after", { quorum: "all", timeoutMs: 10_000 })).replies.get(py.nodeId),
    ).toBe("after");
    expect(py.output()).not.toMatch(/Traceback|reply to \S+ refused/);
  }, 60_000);
});
