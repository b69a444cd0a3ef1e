import { rootCertificates } from "node:tls";
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

/** Checks the material's shape (cert and key go together); INVALID_ARGUMENT naming the field. */
export const checkClientTls = (tls: ClientTls | undefined, field = "tls"): void => {
  if (tls === undefined) return;
  if (typeof tls !== "object" || tls === null) throw invalid(field, "must be { cert, key, ca }");
  for (const k of ["cert", "key"] as const)
    if (tls[k] !== undefined && !isPem(tls[k]))
      throw invalid(`${field}.${k}`, "must be PEM text or a Buffer");
  if (tls.ca !== undefined && !(isPem(tls.ca) || (Array.isArray(tls.ca) && tls.ca.every(isPem))))
    throw invalid(`${field}.ca`, "must be PEM text, a Buffer or an array of them");
  if ((tls.cert === undefined) !== (tls.key === undefined))
    throw invalid(tls.cert === undefined ? `${field}.cert` : `${field}.key`, "cert and key go together");
};

/** Options for https.request, https.Agent and ws: the client certificate, and the hub CA added to the roots. */
export const clientTlsOptions = (tls: ClientTls | undefined): { cert?: Pem; key?: Pem; ca?: Pem[] } => {
  if (!tls) return {};
  const extra = tls.ca === undefined ? [] : Array.isArray(tls.ca) ? tls.ca : [tls.ca];
  return {
    ...(tls.cert !== undefined ? { cert: tls.cert, key: tls.key } : {}),
    ...(extra.length > 0 ? { ca: [...rootCertificates, ...extra] } : {}),
  };
};
