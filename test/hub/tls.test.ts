// TLS: a hub started with --tls-cert/--tls-key serves HTTPS and WSS; a node process that trusts the
// certificate (NODE_EXTRA_CA_CERTS) enrolls and connects over it.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, test } from "vitest";
import { enrollTokenFor, startHubProc, startNodeProc } from "../helpers/procs.ts";

const tls = join(import.meta.dirname, "../fixtures/tls");
const ca = readFileSync(join(tls, "cert.pem"));
const dir = mkdtempSync(join(tmpdir(), "fleetlink-tls-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const get = (url: string, token: string) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(url, { ca, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let body = "";
      res.on("data", (d) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
    req.end();
  });

test("tls - HTTPS routes and a node's WSS stream with a trusted certificate; plain HTTP is refused", async () => {
  const hub = await startHubProc(`sqlite:${join(dir, "fleet.db")}`, "tls-token", [
    "--tls-cert",
    join(tls, "cert.pem"),
    "--tls-key",
    join(tls, "key.pem"),
  ]);
  try {
    expect(hub.value).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const node = await startNodeProc(
      [hub.value],
      "secure",
      enrollTokenFor("tls-token"),
      join(dir, "secure.json"),
      {
        NODE_EXTRA_CA_CERTS: join(tls, "cert.pem"),
      },
    );
    try {
      const res = await get(`${hub.value}/v1/nodes`, "tls-token");
      expect(res.status).toBe(200);
      const nodes = (JSON.parse(res.body) as { nodes: { id: string; status: string }[] }).nodes;
      expect(nodes).toMatchObject([{ id: node.value, status: "online" }]);
      const plain = await fetch(hub.value.replace("https:", "http:")).catch((e) => e);
      expect(plain).toBeInstanceOf(Error);
    } finally {
      await node.kill();
    }
  } finally {
    await hub.kill();
  }
}, 30_000);
