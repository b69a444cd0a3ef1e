// A bare HTTP node client for tests: each request of the HTTP node API by hand, answers as they come.
import { NODE_HTTP_PREFIX } from "../../src/protocol/node-http-schemas.ts";

export interface Answer {
  status: number;
  body: {
    error?: { code: string; message: string; field?: string };
    close?: { code: number; reason: string };
    [k: string]: unknown;
  };
}

/** Enrolls a node through the hub's route; its id and the Authorization header value of its credential. */
export const enrollNode = async (url: string, enrollToken: string, name: string) => {
  const res = await fetch(`${url}/v1/nodes/enroll`, {
    method: "POST",
    headers: { authorization: `Bearer ${enrollToken}`, "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  if (res.status !== 201) throw new Error(`enroll answered ${res.status}: ${await res.text()}`);
  const b = (await res.json()) as { node: { id: string }; credential: string };
  return { id: b.node.id, auth: `Bearer ${b.node.id}.${b.credential}` };
};

/** POST /v1/node/<path> with a JSON body (or raw text), as a node would. */
export const nodePost = async (
  url: string,
  auth: string,
  path: string,
  body: unknown,
  o: { raw?: string; signal?: AbortSignal } = {},
): Promise<Answer> => {
  const res = await fetch(`${url}${NODE_HTTP_PREFIX}/${path}`, {
    method: "POST",
    headers: { authorization: auth, "content-type": "application/json" },
    body: o.raw ?? JSON.stringify(body),
    signal: o.signal,
  });
  const text = await res.text();
  let parsed: Answer["body"] = {};
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { text };
  }
  return { status: res.status, body: parsed };
};

/** A session of one node: open + hello, then its requests by method name. */
export const openSession = async (url: string, auth: string, hello: Record<string, unknown> = {}) => {
  const opened = await nodePost(url, auth, "open", {});
  if (opened.status !== 200)
    throw new Error(`open answered ${opened.status}: ${JSON.stringify(opened.body)}`);
  const session = opened.body.session as string;
  const call = (m: string, b: Record<string, unknown> = {}, o: { signal?: AbortSignal } = {}) =>
    nodePost(url, auth, m, { ...b, session }, o);
  const h = await call("hello", { inflight: [], ...hello });
  if (h.status !== 200) throw new Error(`hello answered ${h.status}: ${JSON.stringify(h.body)}`);
  return {
    session,
    hello: h.body,
    call,
    poll: (acks: string[] = [], waitMs = 5000, o: { signal?: AbortSignal } = {}) =>
      call("poll", { acks, waitMs }, o),
  };
};
