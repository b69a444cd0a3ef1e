import type { FastifyRequest } from "fastify";
import { FleetlinkError } from "../../protocol/errors.ts";
import { isId } from "../../protocol/ids.ts";
import type { Store } from "../../store/store.ts";
import { bearer, hashCredential, parseEnrollToken, parseNodeToken, sameSecret } from "./auth.ts";

/**
 * The three kinds of credential and what each may do:
 * - the admin (coordinator) token: every /v1 route and run streams;
 * - enrollment tokens (the hub's static one, or stored ones with an expiry and a use count): enrollment only;
 * - node credentials (`<nodeId>.<credential>`, issued at enrollment): the node's own stream only.
 * Checks run in `onRequest`, before any body is read or validated: a caller without the right credential
 * learns nothing about schemas and costs the hub no parsing.
 */
export interface AccessContext {
  store: Store;
  token: string;
  enrollToken: string | undefined;
}

/** A valid credential of another kind gets 403 (it is known, but may not do this); anything else 401. */
const refuse = async (ctx: AccessContext, tok: string, need: string): Promise<never> => {
  if (ctx.enrollToken && sameSecret(tok, ctx.enrollToken))
    throw new FleetlinkError("FORBIDDEN", `an enrollment token may only enroll nodes, not ${need}`);
  if (parseEnrollToken(tok))
    throw new FleetlinkError("FORBIDDEN", `an enrollment token may only enroll nodes, not ${need}`);
  if (sameSecret(tok, ctx.token))
    throw new FleetlinkError("FORBIDDEN", "the admin token cannot enroll nodes: use an enrollment token");
  const { nodeId, credential } = (() => {
    try {
      return parseNodeToken(tok);
    } catch {
      return { nodeId: "", credential: "" };
    }
  })();
  if (isId(nodeId)) {
    const node = await ctx.store.getNode(nodeId).catch(() => null);
    if (node?.credentialHash && sameSecret(hashCredential(credential), node.credentialHash))
      throw new FleetlinkError("FORBIDDEN", `a node credential may only open its node stream, not ${need}`);
  }
  throw new FleetlinkError("UNAUTHORIZED", "wrong token");
};

export const requireAdmin =
  (ctx: AccessContext) =>
  async (req: FastifyRequest): Promise<void> => {
    const tok = bearer(req.headers.authorization);
    if (!sameSecret(tok, ctx.token)) await refuse(ctx, tok, "use coordinator routes");
  };

/** The caller of an enrollment: the static token, or a stored token (checked and used in the handler). */
export type Enroller = { kind: "static" } | { kind: "stored"; id: string; secretHash: string };

export const requireEnroll =
  (ctx: AccessContext) =>
  async (req: FastifyRequest): Promise<void> => {
    const tok = bearer(req.headers.authorization);
    if (ctx.enrollToken && sameSecret(tok, ctx.enrollToken)) {
      enrollers.set(req, { kind: "static" });
      return;
    }
    const stored = parseEnrollToken(tok);
    if (stored) {
      enrollers.set(req, { kind: "stored", id: stored.id, secretHash: hashCredential(stored.secret) });
      return;
    }
    await refuse(ctx, tok, "enroll");
  };

const enrollers = new WeakMap<FastifyRequest, Enroller>();
export const enrollerOf = (req: FastifyRequest): Enroller => {
  const e = enrollers.get(req);
  if (!e) throw new FleetlinkError("UNAUTHORIZED", "no enrollment token");
  return e;
};
