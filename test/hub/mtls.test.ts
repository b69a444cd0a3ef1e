// Mutual TLS for nodes (docs/mtls.md): a hub with a client CA requires a valid client certificate on node paths
// (stream upgrade, HTTP node API, enrollment) and nowhere else. Certificates are made here with openssl, by the
// recipe docs/mtls.md gives (run as written), plus an expired one, one from a foreign CA and one for another
// name. Everything runs over real TLS sockets: an in-process hub on https://127.0.0.1:0, real agents, and CLI
// processes for the coordinator (no certificate) and `fleetlink node --cert/--key/--ca`.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import type { CertIdentity } from "../../src/hub/http/client-certs.ts";
import { createHub, type Hub } from "../../src/hub/server.ts";
import { NodeAgent } from "../../src/node/agent.ts";
import { openStore } from "../../src/store/open.ts";
import type { Store } from "../../src/store/store.ts";
import { DialRefused, wsConnector } from "../../src/stream/ws-dial.ts";
import { cli } from "../cli/cli-run.ts";
import { dropSchema, PG_URL, pgSchemaUrl } from "../helpers/postgres.ts";
import { startCli } from "../helpers/procs.ts";

const TOKEN = "mtls-admin-token";
const ENROLL = "mtls-enroll-token";
const dir = mkdtempSync(join(tmpdir(), "fleetlink-mtls-"));
const sh = (script: string) =>
  execFileSync("bash", ["-euo", "pipefail", "-c", script], { cwd: dir, stdio: "pipe" });
const pem = (f: string) => readFileSync(join(dir, f));
const KEYGEN = "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

interface Who {
  cert?: Buffer;
  key?: Buffer;
}
let ca: Buffer;
const who: Record<"valid" | "none" | "expired" | "foreign" | "other", Who> = {} as never;

beforeAll(() => {
  // The recipe, exactly as docs/mtls.md shows it.
  const docs = readFileSync(join(import.meta.dirname, "../../docs/mtls.md"), "utf8");
  const recipe = /<!-- mtls-recipe -->\n```sh\n([\s\S]*?)```/.exec(docs)?.[1];
  expect(recipe, "docs/mtls.md: the recipe block").toBeDefined();
  sh(recipe!);
  // A foreign CA's certificate for the same name, and another name's certificate from the right CA.
  sh(`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=someone else's CA" -keyout foreign-ca.key -out foreign-ca.pem
      ${KEYGEN} -subj "/CN=worker-1" -keyout foreign.key -out foreign.csr
      openssl x509 -req -in foreign.csr -CA foreign-ca.pem -CAkey foreign-ca.key -CAcreateserial -days 365 \
        -extfile client.ext -out foreign.pem
      ${KEYGEN} -subj "/CN=other" -keyout other.key -out other.csr
      openssl x509 -req -in other.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 -extfile client.ext -out other.pem`);
  // Expired, from the right CA: -not_before/-not_after on OpenSSL >= 3.4, a negative validity before that.
  const expired =
    "openssl x509 -req -in worker-1.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile client.ext -out expired.pem";
  sh(`${expired} -not_before 20200101000000Z -not_after 20200102000000Z 2>/dev/null || ${expired} -days -1`);
  // Really expired, and otherwise good: openssl says so.
  expect(() => sh("openssl x509 -checkend 0 -noout -in expired.pem")).toThrow();
  sh("openssl verify -CAfile ca.pem worker-1.pem other.pem");
  ca = pem("ca.pem");
  who.valid = { cert: pem("worker-1.pem"), key: pem("worker-1.key") };
  who.none = {};
  who.expired = { cert: pem("expired.pem"), key: pem("worker-1.key") };
  who.foreign = { cert: pem("foreign.pem"), key: pem("foreign.key") };
  who.other = { cert: pem("other.pem"), key: pem("other.key") };
}, 30_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

/**
 * A hub over HTTPS on port 0 requiring client certificates from `ca.pem`, on SQLite (in memory) or on a
 * PostgreSQL schema of its own; counts upgrades and requests.
 */
const startHub = async (
  clientCertIdentity: CertIdentity = "none",
  o: { blobs?: boolean; backend?: "sqlite" | "postgres" } = {},
) => {
  const pg = o.backend === "postgres" ? pgSchemaUrl("mtls") : undefined;
  const store: Store = await openStore(pg ? pg.url : "memory:");
  if (pg) cleanups.push(() => dropSchema(pg.schema));
  const blobDir = mkdtempSync(join(dir, "blobs-"));
  const hub: Hub = createHub({
    store,
    token: TOKEN,
    enrollToken: ENROLL,
    tls: { cert: pem("hub.pem"), key: pem("hub.key"), clientCa: ca, clientCertIdentity },
    ...(o.blobs ? { blobStore: `file://${blobDir}` } : {}),
  });
  const url = await hub.listen();
  const seen = { upgrades: 0, requests: 0 };
  hub.app.server.on("upgrade", () => seen.upgrades++);
  hub.app.server.on("request", () => seen.requests++);
  cleanups.push(async () => {
    await hub.close();
    await store.close();
  });
  return { hub, url, store, seen, blobDir };
};

/** One HTTPS request, on a fresh connection (no session shared between identities). */
const request = (
  url: string,
  method: string,
  auth: string,
  as: Who,
  body?: unknown,
): Promise<{
  status: number;
  body: { error?: { code: string; message: string; field?: string } } & Record<string, unknown>;
}> =>
  new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(url, {
      method,
      ca,
      ...as,
      agent: false,
      headers: {
        authorization: `Bearer ${auth}`,
        ...(data ? { "content-type": "application/json", "content-length": Buffer.byteLength(data) } : {}),
      },
    });
    req.on("response", (res) => {
      let text = "";
      res.on("data", (d) => {
        text += d;
      });
      res.on("end", () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : {} }));
    });
    req.on("error", reject);
    req.end(data);
  });

const enroll = (url: string, name: string, as: Who) =>
  request(`${url}/v1/nodes/enroll`, "POST", ENROLL, as, { name });

/** Dials the node stream as `nodeId.credential` presenting `as`: "open", or the refusal. */
const dialStream = async (url: string, credential: string, as: Who): Promise<"open" | DialRefused> => {
  const connect = wsConnector({
    url: (h) => `${h}/v1/nodes/stream`,
    headers: () => ({ authorization: `Bearer ${credential}` }),
    handshakeTimeoutMs: 5000,
    tls: { ...as, ca },
  });
  try {
    const t = await connect(url);
    t.close(1000, "test done");
    return "open";
  } catch (e) {
    if (e instanceof DialRefused) return e;
    throw e;
  }
};

const REASONS = {
  none: /^client certificate required$/,
  expired: /^client certificate expired \(valid until .+\)$/,
  foreign: /^client certificate not signed by the client CA \(\w+\)$/,
} as const;

describe("mtls", () => {
  test("mtls - nodes with a valid certificate (WebSocket and HTTP node API) answer a coordinator that has the admin token and no certificate", async () => {
    const { url, seen, blobDir } = await startHub("none", { blobs: true });
    const handlers = {
      // Larger than inlineBytes: the result is uploaded over the node blob routes, with the certificate.
      big: async () => Buffer.alloc(4096, 7),
      echo: async (p: unknown) => p,
    };
    const agents = [
      new NodeAgent({
        hubs: [url],
        name: "ws-node",
        enrollToken: ENROLL,
        handlers,
        inlineBytes: 1024,
        tls: { ...who.valid, ca },
      }),
      new NodeAgent({
        hubs: [url],
        name: "http-node",
        enrollToken: ENROLL,
        handlers,
        inlineBytes: 1024,
        transport: "http",
        tls: { ...who.valid, ca },
      }),
    ];
    for (const a of agents) cleanups.push(() => a.stop({ timeoutMs: 500 }));
    await Promise.all(agents.map((a) => a.start()));
    expect(agents.map((a) => a.state.state)).toEqual(["online", "online"]);
    expect(seen.upgrades).toBe(1);
    // The coordinator: the CLI, trusting the hub's CA, with the admin token and no client certificate.
    const env = { NODE_EXTRA_CA_CERTS: join(dir, "ca.pem"), FLEETLINK_HUB: url, FLEETLINK_TOKEN: TOKEN };
    const [echo, big] = await Promise.all([
      cli(["call", "echo", '"over mtls"', "--all", "--quorum", "all", "--json"], { env }),
      cli(["call", "big", "--all", "--quorum", "all", "--json"], { env }),
    ]);
    expect(echo.code, echo.stderr).toBe(0);
    expect(echo.stdout.match(/"over mtls"/g)).toHaveLength(2);
    expect(big.code, big.stderr).toBe(0);
    // The result went as a blob: uploaded by the agents over /v1/node/blobs, with their certificate.
    const stored = readdirSync(blobDir, { recursive: true, withFileTypes: true }).filter((f) => f.isFile());
    expect(stored.length).toBeGreaterThanOrEqual(1);
    // Read routes too: no certificate needed.
    const nodes = await request(`${url}/v1/nodes`, "GET", TOKEN, who.none);
    expect(nodes.status).toBe(200);
    expect((nodes.body.nodes as { name: string }[]).map((n) => n.name).sort()).toEqual([
      "http-node",
      "ws-node",
    ]);
  }, 60_000);

  test("mtls - no, an expired or a foreign-CA certificate: enrollment, the stream and the HTTP node API are refused 401 naming the reason; agents stop rejected without retrying", async () => {
    const { url, seen } = await startHub("none", { blobs: true });
    const ok = await enroll(url, "worker-1", who.valid);
    expect(ok.status).toBe(201);
    const credential = `${(ok.body.node as { id: string }).id}.${ok.body.credential as string}`;
    expect(await dialStream(url, credential, who.valid)).toBe("open");
    for (const bad of ["none", "expired", "foreign"] as const) {
      const reason = REASONS[bad];
      const e = await enroll(url, `${bad}-node`, who[bad]);
      expect([e.status, e.body.error?.code, e.body.error?.field], bad).toEqual([
        401,
        "FLEETLINK_E_UNAUTHORIZED",
        "clientCertificate",
      ]);
      expect(e.body.error!.message, bad).toMatch(reason);
      const refused = await dialStream(url, credential, who[bad]);
      expect(refused, bad).toBeInstanceOf(DialRefused);
      const r = refused as DialRefused;
      expect([r.status, r.code, r.field], bad).toEqual([
        401,
        "FLEETLINK_E_UNAUTHORIZED",
        "clientCertificate",
      ]);
      expect(r.detail, bad).toMatch(reason);
      const open = await request(`${url}/v1/node/open`, "POST", credential, who[bad], {});
      expect([open.status, open.body.error?.code], bad).toEqual([401, "FLEETLINK_E_UNAUTHORIZED"]);
      expect(open.body.error!.message, bad).toMatch(reason);
      // A node blob route is a node path too.
      const blob = await request(`${url}/v1/node/blobs`, "POST", credential, who[bad], {});
      expect([blob.status, blob.body.error?.message], bad).toEqual([401, expect.stringMatching(reason)]);

      // Enrolled agents with this certificate, over the WebSocket and the HTTP node API: one dial (one upgrade,
      // one open) each, then `rejected` with the hub's reason, for good.
      const before = { ...seen };
      const [nodeId, secret] = credential.split(".") as [string, string];
      const agents = (["ws", "http"] as const).map(
        (transport) =>
          new NodeAgent({
            hubs: [url],
            name: "worker-1",
            identity: { nodeId, credential: secret },
            handlers: {},
            transport,
            tls: { ...who[bad], ca },
          }),
      );
      for (const a of agents) cleanups.push(() => a.stop({ timeoutMs: 200 }));
      const t0 = Date.now();
      const failed = await Promise.all(
        agents.map((a) =>
          a.start().then(
            () => null,
            (err: Error) => err,
          ),
        ),
      );
      expect(Date.now() - t0, bad).toBeLessThan(5000);
      for (const f of failed)
        expect(f?.message, bad).toMatch(
          /refuses this node's client certificate: FLEETLINK_E_UNAUTHORIZED: client certificate/,
        );
      expect(agents.map((a) => a.state.state)).toEqual(["rejected", "rejected"]);
      await new Promise((r) => setTimeout(r, 1500));
      expect(seen.upgrades - before.upgrades, `${bad}: stream dials`).toBe(1);
      expect(seen.requests - before.requests, `${bad}: HTTP opens`).toBe(1);

      // An agent that must enroll first: one enrollment request, refused for good with the reason.
      const requests = seen.requests;
      const fresh = new NodeAgent({
        hubs: [url],
        name: `${bad}-fresh`,
        enrollToken: ENROLL,
        handlers: {},
        tls: { ...who[bad], ca },
      });
      cleanups.push(() => fresh.stop({ timeoutMs: 200 }));
      const refusedEnroll = await fresh.start().then(
        () => null,
        (err: Error & { code?: string }) => err,
      );
      expect(refusedEnroll?.code, bad).toBe("FLEETLINK_E_UNAUTHORIZED");
      expect(refusedEnroll?.message, bad).toMatch(
        /enrollment refused by .* HTTP 401 FLEETLINK_E_UNAUTHORIZED: client certificate/,
      );
      await new Promise((r) => setTimeout(r, 500));
      expect(seen.requests - requests, `${bad}: enrollment requests`).toBe(1);
    }
    // Nothing was enrolled by the refused attempts.
    const nodes = await request(`${url}/v1/nodes`, "GET", TOKEN, who.none);
    expect((nodes.body.nodes as { name: string }[]).map((n) => n.name)).toEqual(["worker-1"]);
  }, 60_000);

  test.each(PG_URL ? (["sqlite", "postgres"] as const) : (["sqlite"] as const))(
    "mtls - binding by name (%s): enrollment, the stream and the HTTP node API are refused 403 when the certificate's CN is not the node's name",
    async (backend) => {
      const { url, seen } = await startHub("name", { backend });
      const stolen = await enroll(url, "worker-2", who.valid);
      expect([stolen.status, stolen.body.error?.code]).toEqual([403, "FLEETLINK_E_FORBIDDEN"]);
      expect(stolen.body.error!.message).toMatch(
        /^certificate identity "worker-1" does not match node "worker-2"/,
      );
      const other = await enroll(url, "other", who.other);
      expect(other.status).toBe(201);
      const nodeId = (other.body.node as { id: string }).id;
      const credential = `${nodeId}.${other.body.credential as string}`;
      expect(await dialStream(url, credential, who.other)).toBe("open");
      // worker-1's (valid) certificate with other's credential.
      const r = (await dialStream(url, credential, who.valid)) as DialRefused;
      expect([r.status, r.code, r.field]).toEqual([403, "FLEETLINK_E_FORBIDDEN", "clientCertificate"]);
      expect(r.detail).toMatch(/^certificate identity "worker-1" does not match node "other"/);
      const open = await request(`${url}/v1/node/open`, "POST", credential, who.valid, {});
      expect([open.status, open.body.error?.message]).toEqual([
        403,
        expect.stringMatching(/^certificate identity "worker-1" does not match node "other"/),
      ]);
      expect((await request(`${url}/v1/node/open`, "POST", credential, who.other, {})).status).toBe(200);
      // A wrong credential is the route's 401, and the refusal names no node.
      const wrong = await request(
        `${url}/v1/node/open`,
        "POST",
        `${nodeId}.not-its-credential`,
        who.valid,
        {},
      );
      expect([wrong.status, wrong.body.error?.code]).toEqual([401, "FLEETLINK_E_UNAUTHORIZED"]);
      expect(wrong.body.error!.message).not.toMatch(/other|certificate/);
      // An agent with the wrong certificate: rejected after one dial, not retried.
      const upgrades = seen.upgrades;
      const agent = new NodeAgent({
        hubs: [url],
        name: "other",
        identity: { nodeId, credential: other.body.credential as string },
        handlers: {},
        tls: { ...who.valid, ca },
      });
      cleanups.push(() => agent.stop({ timeoutMs: 200 }));
      await expect(agent.start()).rejects.toThrow(
        /FLEETLINK_E_FORBIDDEN: certificate identity "worker-1" does not match node "other"/,
      );
      await new Promise((res) => setTimeout(res, 1500));
      expect(seen.upgrades - upgrades).toBe(1);
      // Its own certificate: enrolls and comes online.
      const good = new NodeAgent({
        hubs: [url],
        name: "worker-1",
        enrollToken: ENROLL,
        handlers: {},
        tls: { ...who.valid, ca },
      });
      cleanups.push(() => good.stop({ timeoutMs: 200 }));
      await good.start();
      expect(good.state.state).toBe("online");
    },
    60_000,
  );

  test("mtls - binding by id: a certificate issued for the node's id after enrollment opens its stream; its name's does not", async () => {
    const { url } = await startHub("id");
    const e = await enroll(url, "worker-1", who.valid);
    expect(e.status).toBe(201);
    const nodeId = (e.body.node as { id: string }).id;
    const credential = `${nodeId}.${e.body.credential as string}`;
    const r = (await dialStream(url, credential, who.valid)) as DialRefused;
    expect([r.status, r.detail]).toEqual([
      403,
      expect.stringMatching(`^certificate identity "worker-1" does not match node "${nodeId}"`),
    ]);
    sh(`${KEYGEN} -subj "/CN=${nodeId}" -keyout by-id.key -out by-id.csr
        openssl x509 -req -in by-id.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile client.ext -out by-id.pem`);
    expect(await dialStream(url, credential, { cert: pem("by-id.pem"), key: pem("by-id.key") })).toBe("open");
  });

  test("mtls - fleetlink node --cert/--key/--ca comes online; without --cert it exits naming the reason; serve checks its flags", async () => {
    const { url } = await startHub("name");
    const node = await startCli(
      [
        "node",
        "--hub",
        url,
        "--name",
        "worker-1",
        "--handlers",
        join(import.meta.dirname, "../fixtures/handlers.ts"),
        "--token",
        ENROLL,
        "--identity",
        join(dir, "cli-node.json"),
        "--cert",
        join(dir, "worker-1.pem"),
        "--key",
        join(dir, "worker-1.key"),
        "--ca",
        join(dir, "ca.pem"),
      ],
      /online as (\S+)/,
    );
    cleanups.push(() => node.kill());
    expect(node.value).toMatch(/^[0-9a-f-]{36}$/);
    const [noCert, keyless, serve, identityAlone] = await Promise.all([
      cli([
        "node",
        "--hub",
        url,
        "--name",
        "worker-9",
        "--handlers",
        join(import.meta.dirname, "../fixtures/handlers.ts"),
        "--token",
        ENROLL,
        "--identity",
        join(dir, "cli-node-9.json"),
        "--ca",
        join(dir, "ca.pem"),
      ]),
      cli([
        "node",
        "--hub",
        url,
        "--name",
        "worker-9",
        "--handlers",
        join(import.meta.dirname, "../fixtures/handlers.ts"),
        "--token",
        ENROLL,
        "--cert",
        join(dir, "worker-1.pem"),
      ]),
      cli(["serve", "--db", "memory:", "--port", "0", "--token", TOKEN, "--client-ca", join(dir, "ca.pem")]),
      cli(["serve", "--db", "memory:", "--port", "0", "--token", TOKEN, "--client-cert-identity", "name"]),
    ]);
    expect(noCert.code).not.toBe(0);
    expect(noCert.stderr).toMatch(/HTTP 401 FLEETLINK_E_UNAUTHORIZED: client certificate required/);
    expect(keyless.code).not.toBe(0);
    expect(keyless.stderr).toMatch(/--cert and --key go together/);
    expect(serve.code).not.toBe(0);
    expect(serve.stderr).toMatch(/--client-ca needs --tls-cert/);
    expect(identityAlone.code).not.toBe(0);
    expect(identityAlone.stderr).toMatch(/--client-cert-identity needs --client-ca/);
  }, 60_000);

  test("mtls - bad options are refused naming the field", async () => {
    const store = await openStore("memory:");
    cleanups.push(() => store.close());
    const tls = { cert: pem("hub.pem"), key: pem("hub.key") };
    for (const [opts, field] of [
      [{ ...tls, clientCa: ca, clientCertIdentity: "cn" }, "tls.clientCertIdentity"],
      [{ ...tls, clientCertIdentity: "name" }, "tls.clientCertIdentity"],
      // OpenSSL would take these and trust nothing.
      [{ ...tls, clientCa: "not a certificate" }, "tls.clientCa"],
      [{ ...tls, clientCa: pem("worker-1.key") }, "tls.clientCa"],
      [
        { ...tls, clientCa: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" },
        "tls.clientCa",
      ],
    ] as const) {
      let err: { code?: string; field?: string } | undefined;
      try {
        createHub({ store, token: TOKEN, tls: opts as never });
      } catch (e) {
        err = e as never;
      }
      expect([err?.code, err?.field]).toEqual(["FLEETLINK_E_INVALID_ARGUMENT", field]);
    }
    for (const [t, field] of [
      [{ cert: who.valid.cert }, "tls.key"],
      [{ key: who.valid.key }, "tls.cert"],
      [{ cert: 42, key: who.valid.key }, "tls.cert"],
      [{ ca: [ca, 1] }, "tls.ca"],
      [{ ca: "garbage" }, "tls.ca"],
      // The key is not the certificate's.
      [{ cert: who.valid.cert, key: who.other.key }, "tls"],
    ] as const) {
      expect(
        () => new NodeAgent({ hubs: ["https://127.0.0.1:1"], name: "n", handlers: {}, tls: t as never }),
      ).toThrow(expect.objectContaining({ code: "FLEETLINK_E_INVALID_ARGUMENT", field }));
    }
  });
});
