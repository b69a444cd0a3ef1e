import type { TLSSocket } from "node:tls";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { FleetlinkError, invalid, isFleetlinkError } from "../../protocol/errors.ts";
import { isId } from "../../protocol/ids.ts";
import { MAX_LOGGED_CHARS, truncate } from "../../protocol/limits.ts";
import type { Store } from "../../store/store.ts";
import { checkPemCertificates } from "../../stream/client-tls.ts";
import { bearer, hashCredential, parseNodeToken, sameSecret } from "./auth.ts";

/**
 * Mutual TLS for nodes (docs/mtls.md). The hub asks every TLS client for a certificate but lets the handshake
 * through without one (`requestCert: true, rejectUnauthorized: false`), because coordinators, admins and
 * dashboards present none; node paths (the stream's upgrade, `/v1/node/*`, `POST /v1/nodes/enroll`) then
 * refuse a socket whose certificate is missing or did not verify against the client CA.
 */

/** What a client certificate's subject CN must equal: the node's name, its id, or nothing. */
export const CERT_IDENTITIES = ["none", "name", "id"] as const;
export type CertIdentity = (typeof CERT_IDENTITIES)[number];

export const checkCertIdentity = (v: unknown): CertIdentity => {
  if (!CERT_IDENTITIES.includes(v as CertIdentity))
    throw invalid("tls.clientCertIdentity", `must be one of ${CERT_IDENTITIES.join(", ")}, not ${String(v)}`);
  return v as CertIdentity;
};

/**
 * The TLS options that make a server ask for (not require) client certificates signed by `clientCa`, which
 * must hold certificates (INVALID_ARGUMENT `tls.clientCa` otherwise: OpenSSL would take it and trust nothing).
 */
export const clientCertServerOptions = (clientCa: string | Buffer | (string | Buffer)[]) => {
  checkPemCertificates(clientCa, "tls.clientCa");
  return { ca: clientCa, requestCert: true, rejectUnauthorized: false };
};

/** OpenSSL verify codes that mean "out of its validity", as opposed to "not ours". */
const EXPIRED = new Set(["CERT_HAS_EXPIRED"]);
const NOT_YET = new Set(["CERT_NOT_YET_VALID"]);

/**
 * The subject CN of the socket's client certificate, if it verified against the client CA and is within its
 * validity; else UNAUTHORIZED naming the reason (field `clientCertificate`, which an agent takes as final).
 */
export const verifiedClientCert = (socket: unknown): string => {
  const s = socket as Partial<TLSSocket>;
  const refuse = (why: string) => new FleetlinkError("UNAUTHORIZED", why, { field: "clientCertificate" });
  if (typeof s.getPeerCertificate !== "function")
    throw refuse("client certificate required: this path needs TLS with a client certificate");
  const cert = s.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) throw refuse("client certificate required");
  if (!s.authorized) {
    const code = String((s.authorizationError as unknown as { code?: string })?.code ?? s.authorizationError);
    if (EXPIRED.has(code)) throw refuse(`client certificate expired (valid until ${cert.valid_to})`);
    if (NOT_YET.has(code)) throw refuse(`client certificate not yet valid (valid from ${cert.valid_from})`);
    throw refuse(`client certificate not signed by the client CA (${truncate(code, MAX_LOGGED_CHARS)})`);
  }
  const cn = cert.subject?.CN;
  return typeof cn === "string" ? cn : "";
};

/** FORBIDDEN unless the certificate's CN equals the node's name or id, as `identity` says. */
export const bindCertIdentity = (
  identity: CertIdentity,
  cn: string,
  node: { id: string; name: string },
): void => {
  if (identity === "none") return;
  const want = identity === "name" ? node.name : node.id;
  if (cn !== want)
    throw new FleetlinkError(
      "FORBIDDEN",
      `certificate identity ${JSON.stringify(truncate(cn, 200))} does not match node ${JSON.stringify(want)} (the certificate's subject CN must be the node's ${identity})`,
      { field: "clientCertificate" },
    );
};

export interface ClientCertPolicy {
  identity: CertIdentity;
}

/** Paths of the node role over HTTP: the HTTP node API (blobs included) and enrollment. */
const isNodeApi = (route: string) => route.startsWith("/v1/node/");
const ENROLL = "/v1/nodes/enroll";

/**
 * Hooks on every route of `app` (register them on the root, before the routes): a node route's request is
 * refused before its credential is read unless its socket holds a verified client certificate; with a
 * binding, the certificate's CN must match the node the bearer names (the route still authenticates that
 * node), or the name an enrollment asks for (`identity: "id"` cannot bind an enrollment: the id comes after).
 */
export const registerClientCertChecks = (
  app: FastifyInstance,
  o: ClientCertPolicy & { store: Store },
): void => {
  // Sockets already bound to a node: a keep-alive connection's polls cost no store read each.
  const bound = new WeakMap<object, string>();
  const certs = new WeakMap<FastifyRequest, string>();
  app.addHook("onRequest", async (req) => {
    // The matched route's pattern, not the raw URL: a request reaches a node route only through it.
    const route = req.routeOptions.url ?? "";
    if (!isNodeApi(route) && route !== ENROLL) return;
    const cn = verifiedClientCert(req.raw.socket);
    certs.set(req, cn);
    if (route === ENROLL || o.identity === "none") return;
    // A missing, malformed or wrong credential is the route's to refuse (401): only the node it proves is bound
    // here, so a refusal never names a node to a caller that could not authenticate as it.
    let token: { nodeId: string; credential: string };
    try {
      token = parseNodeToken(bearer(req.headers.authorization));
    } catch {
      return;
    }
    if (!isId(token.nodeId) || bound.get(req.raw.socket) === token.nodeId) return;
    // Fail closed: only "no such node" is the route's to refuse; a store failure must not skip the binding.
    const node = await o.store.getNode(token.nodeId).catch((e: unknown) => {
      if (isFleetlinkError(e, "NODE_NOT_FOUND")) return null;
      throw e;
    });
    if (!node?.credentialHash || !sameSecret(hashCredential(token.credential), node.credentialHash)) return;
    bindCertIdentity(o.identity, cn, node);
    bound.set(req.raw.socket, token.nodeId);
  });
  if (o.identity !== "name") return;
  // The enrolled name is in the body: compared once it is parsed, after the enrollment token was checked.
  app.addHook("preValidation", async (req) => {
    if (req.routeOptions.url !== ENROLL) return;
    const name = (req.body as { name?: unknown } | null)?.name;
    if (typeof name === "string") bindCertIdentity("name", certs.get(req) ?? "", { id: "", name });
  });
};
