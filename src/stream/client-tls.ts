import { X509Certificate } from "node:crypto";
import { createSecureContext, rootCertificates, type SecureContext } from "node:tls";
import { invalid } from "../protocol/errors.ts";

type Pem = string | Buffer;

/**
 * A client's TLS material for https:// and wss:// hubs (docs/mtls.md): its certificate and key, presented to
 * a hub that requires client certificates (`fleetlink serve --client-ca`), and a CA to trust for the hub's
 * own certificate, in addition to the system roots (as NODE_EXTRA_CA_CERTS would), so presigned blob URLs of
 * a public object store still verify.
 */
export interface ClientTls {
  /** Client certificate (PEM), with any intermediates after it. Needs `key`. */
  cert?: Pem;
  /** The client certificate's private key (PEM). */
  key?: Pem;
  /** CA certificate(s) (PEM) that sign the hub's certificate. (Default: the system roots only) */
  ca?: Pem | Pem[];
}

const isPem = (v: unknown) => typeof v === "string" || Buffer.isBuffer(v);

/**
 * Checks that CA material holds certificates, each parseable: OpenSSL takes anything else without a word and
 * then verifies nothing against it. INVALID_ARGUMENT naming `field`.
 */
export const checkPemCertificates = (v: unknown, field: string): void => {
  const all = Array.isArray(v) ? v : [v];
  let n = 0;
  for (const item of all) {
    if (!isPem(item)) throw invalid(field, "must be PEM text, a Buffer or an array of them");
    const blocks = String(item).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    for (const b of blocks) {
      try {
        new X509Certificate(b);
      } catch (e) {
        throw invalid(field, `holds a certificate that does not parse: ${(e as Error).message}`);
      }
    }
    n += blocks.length;
  }
  if (n === 0) throw invalid(field, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
};

/** Checks the material's shape (cert and key go together); INVALID_ARGUMENT naming the field. */
export const checkClientTls = (tls: ClientTls | undefined, field = "tls"): void => {
  if (tls === undefined) return;
  if (typeof tls !== "object" || tls === null) throw invalid(field, "must be { cert, key, ca }");
  for (const k of ["cert", "key"] as const)
    if (tls[k] !== undefined && !isPem(tls[k]))
      throw invalid(`${field}.${k}`, "must be PEM text or a Buffer");
  if (tls.ca !== undefined) checkPemCertificates(tls.ca, `${field}.ca`);
  if ((tls.cert === undefined) !== (tls.key === undefined))
    throw invalid(tls.cert === undefined ? `${field}.cert` : `${field}.key`, "cert and key go together");
  try {
    clientTlsOptions(tls);
  } catch (e) {
    // Unreadable PEM, a key that is not the certificate's: said now, not at the first dial.
    throw invalid(field, `cannot use it: ${(e as Error).message}`);
  }
};

const contexts = new WeakMap<ClientTls, SecureContext>();

/**
 * Options for https.request, https.Agent and ws: one secure context per ClientTls object, holding the client
 * certificate and the hub CA added to the roots. Made once: a context with the ~140 system roots takes ~12 ms
 * to build (measured here), which every dial would otherwise pay.
 */
export const clientTlsOptions = (tls: ClientTls | undefined): { secureContext?: SecureContext } => {
  if (!tls || (tls.cert === undefined && tls.ca === undefined)) return {};
  let secureContext = contexts.get(tls);
  if (!secureContext) {
    const extra = tls.ca === undefined ? [] : Array.isArray(tls.ca) ? tls.ca : [tls.ca];
    secureContext = createSecureContext({
      ...(tls.cert !== undefined ? { cert: tls.cert, key: tls.key } : {}),
      ...(extra.length > 0 ? { ca: [...rootCertificates, ...extra] } : {}),
    });
    contexts.set(tls, secureContext);
  }
  return { secureContext };
};
